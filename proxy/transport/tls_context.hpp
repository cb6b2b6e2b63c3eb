// OpenSSL contexts for both legs, built once at start-up (exceptions allowed there).
#pragma once

#include <memory>
#include <string>

#include <asio/ssl/context.hpp>
#include <openssl/ssl.h>

namespace imapscope::transport {

using TlsContextPtr = std::shared_ptr<asio::ssl::context>;

// What both legs share: TLS >= 1.2, buffers released while idle, whole-socket reads,
// no compression or renegotiation. The client leg's contexts: server_tls.hpp.
void apply_common_tls_settings(SSL_CTX* ctx);
// Upstream leg: verification against ca_file (or the system store) unless verify is false.
TlsContextPtr make_client_tls_context(const std::string& ca_file, bool verify);

}  // namespace imapscope::transport
