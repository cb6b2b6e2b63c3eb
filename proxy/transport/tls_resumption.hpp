// TLS session resumption towards the upstream. Every client session opens its own
// connection to the server, so without resumption each costs a full handshake on
// both ends (key exchange and certificate check: most of the proxy's CPU per new
// session, see BENCHMARKS.md). The upstream context keeps the server's tickets, a
// few per server, and each new connection offers one.
//
// TLS 1.3 tickets are used once (RFC 8446 C.4: reuse would let an observer link the
// connections); the server sends fresh ones on every connection, resumed or not.
// A TLS 1.2 session is offered again as long as the server resumes it.
#pragma once

#include <string>

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace imapscope::transport {

// Gives the upstream context a session store and the callback that fills it.
void enable_upstream_resumption(SSL_CTX* ctx);
// Before the handshake: names the server (its address and name) and offers a
// session kept from an earlier connection to it, if any. key must outlive ssl.
void offer_kept_session(SSL* ssl, const std::string* key);
// After a successful handshake: keeps a resumed TLS 1.2 session for the next one.
void keep_reusable_session(SSL* ssl);

}  // namespace imapscope::transport
