// nginx's auth_http, spoken as nginx's mail proxy speaks it, so that a site moving
// from nginx keeps its authentication service. What nginx does (read from
// src/mail/ngx_mail_auth_http_module.c, nginx 1.29):
//
// The request (ngx_mail_auth_http_create_request), one per login, on a new connection:
//   GET <uri> HTTP/1.0             uri: the auth_http URL's path ("/" without one)
//   Host: <host>                   the URL's host, without the port
//   Auth-Method: plain             IMAP LOGIN, AUTHENTICATE PLAIN and LOGIN are all
//                                  "plain" (also apop, cram-md5, external, none)
//   Auth-User: <login>             escaped (ngx_escape_uri, NGX_ESCAPE_MAIL_AUTH, the
//   Auth-Pass: <password>          memcached table): only bytes 00-1F, space and "%"
//                                  become %XX (upper-case hex); "+", 7F and 8-bit bytes
//                                  (UTF-8) go as they are
//   Auth-Protocol: imap
//   Auth-Login-Attempt: <n>        1, 2, ... for the logins of one connection
//   Client-IP: <address>           the client (the PROXY header's source when
//                                  set_real_ip_from trusts the balancer), no port
//   Client-Host: <name>            SMTP only (its resolver's answer, "[UNAVAILABLE]"):
//                                  never for IMAP
//   Proxy-Protocol-Addr: <a>       only after a PROXY header: its source address (the
//   Proxy-Protocol-Port: <p>       client, not the balancer) and port, then
//   Proxy-Protocol-Server-Addr/-Port   its destination
//   Auth-SMTP-Helo/-From/-To       SMTP without authentication only: never for IMAP
//   Auth-SSL: on                   only when the client's leg is TLS, followed by
//   Auth-SSL-Protocol, -Cipher     when known, and, with ssl_verify_client only,
//   Auth-SSL-Verify, -Subject, -Issuer, -Serial, -Fingerprint (and -Cert, escaped)
//   <auth_http_header lines>       configured extra headers
//   (empty line)
// Headers appear in this order; nothing else is sent (no Connection, no body).
// Checked against Debian's nginx 1.22 with libnginx-mod-mail: LOGIN as literals with
// "b\xc3\xb6b smith" / "pass word 100%+\xc3\xa4", and behind a PROXY header.
//
// The answer (ngx_mail_auth_http_ignore_status_line, _process_headers): the status
// line is skipped unread (its code is not looked at); headers are read up to the empty
// line (the body never), names case-insensitively, values with blanks trimmed, the last
// of a repeated header counting:
//   Auth-Status: OK      route;  WAIT: sleep Auth-Wait seconds (0: at once) and ask
//                        again; anything else: the text of the client's "tag NO <text>".
//                        No Auth-Status at all routes too, given Auth-Server and -Port.
//   Auth-Server          the backend: an IP address only (ngx_parse_addr; no names, no
//                        brackets); missing, or a name: an internal error for the client
//   Auth-Port            1-65535; missing or bad: an internal error
//   Auth-User, Auth-Pass the login and password for the backend (taken as sent, not
//                        unescaped); the client's own when absent
//   Auth-Wait            seconds (digits; anything else is ignored). With an error: the
//                        NO waits that long and the client may log in again; without
//                        Auth-Wait nginx sends the NO and closes the connection. With
//                        WAIT: the pause before asking again. With OK: ignored.
//   Auth-Error-Code      SMTP only
// A timeout (auth_http_timeout, 60 s by default), a refused connection or a malformed
// header is an internal error for the client ("NO [UNAVAILABLE]" here).
//
// Beyond nginx: a JSON answer (Content-Type application/json, no Auth-Status header)
// with the field names of Dovecot's proxy passdb: host (an address or a name), port,
// ssl / starttls ("yes", true; "any-cert" counts as yes, verification is configured
// here), destuser, pass, master (yes/no only), proxy_timeout and other fields
// ignored, nologin (+ reason) refuses.
//
// Sans-IO: bytes to send, answers parsed; transport::Router does the exchange.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "proxy/route/backend.hpp"

namespace imapscope::route {

// Where the requests go: the Host header and the request target of the auth_http URL.
struct AuthHttpTarget {
  std::string host_header;  // "127.0.0.1" (as nginx: the host without the port)
  std::string path = "/";   // "/auth" (with its query, if any)
};

// An HTTP answer as received (transport::http_exchange fills it).
struct HttpAnswer {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent, in order
  std::string body;
  // The last value of a header (names case-insensitively), or "".
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

// nginx's escaping of Auth-User and Auth-Pass (see above).
std::string auth_http_escape(std::string_view text);

// The request bytes for one login, exactly as nginx would send them, except for what
// a LoginRequest does not carry: the client certificate's lines (client certificates
// are not asked for). The Proxy-Protocol lines are the PROXY
// header's source (the client) and destination. No Client-Host: nginx sends none for IMAP.
std::string auth_http_request(const AuthHttpTarget& target, const LoginRequest& request);

// What an answer says. ask_again: nginx's WAIT, ask again after result.wait.
struct AuthHttpVerdict {
  LookupResult result;
  bool ask_again = false;
};

// The longest Auth-Wait honoured: a service can't park a client for hours.
inline constexpr std::chrono::seconds kMaxAuthWait{600};

// Routed (Auth-Server/-Port, or host/port, with default_tls unless the JSON says ssl or
// starttls), Refused (the Auth-Status text, or nologin's reason, with Auth-Wait), WAIT,
// or Unavailable with why (for the log: never Auth-Pass nor the client's secret).
AuthHttpVerdict parse_auth_http_answer(const HttpAnswer& answer, BackendTls default_tls);

}  // namespace imapscope::route
