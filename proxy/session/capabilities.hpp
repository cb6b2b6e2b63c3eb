// The capability list a client sees describes the client's leg, not the server's:
// the proxy terminates TLS, handles STARTTLS itself and keeps the stream readable.
#pragma once

#include <string>
#include <string_view>

namespace imapscope::session {

struct ClientLegView {
  bool tls = false;                   // the client leg is encrypted (implicit TLS or after STARTTLS)
  bool starttls_available = false;    // plain listener with a certificate
  bool login_disabled_until_tls = false;  // LOGIN/AUTHENTICATE refused on this leg until TLS
  bool compress_offered = false;      // the listener offers COMPRESS=DEFLATE (the proxy's own)
  // ... and passes the client's COMPRESS to a server that offers it, where it can.
  bool compress_pass_through = false;
  bool compressed = false;            // the client turned it on
};

// Rewrites a space-separated capability list (from "* CAPABILITY ..." or a
// "[CAPABILITY ...]" code):
// - STARTTLS: shown only on a plain client leg that can upgrade;
// - LOGINDISABLED: shown only on a plain client leg when login needs TLS there, and
//   then no AUTH=* either (RFC 9051 §6.2.3: the proxy refuses every mechanism);
// - AUTH=*-PLUS (SCRAM channel binding) removed: it can't survive TLS termination;
// - COMPRESS=* of the server removed: compression is each leg's business. With
//   offer_compress (the listener offers it, the client is logged in and hasn't turned
//   it on yet) the proxy's own COMPRESS=DEFLATE is listed instead.
// Returns the same text when nothing changes, so unchanged bytes stay unchanged.
std::string rewrite_capabilities(std::string_view list, const ClientLegView& leg, bool offer_compress = false);

}  // namespace imapscope::session
