// What routing mode works with: a backend (one mail server), what a lookup is asked
// (the login as the client gave it, and where it came from), and what it answers
// (where the session goes and as whom, a refusal, or that no answer could be had).
// The lookups (route_map, auth_http), the pre-login phase and the backend pool all
// speak these; none of them knows sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace imapscope::route {

enum class BackendTls : std::uint8_t { None, Implicit, Starttls };

struct Backend {
  std::string host;  // an IP address or a name
  std::uint16_t port = 143;
  BackendTls tls = BackendTls::None;
  // "host:port" ("[v6]:port"): the backend's identity in metrics, the API and logs.
  std::string name() const;
  bool operator==(const Backend&) const = default;
};

// What a lookup is asked; nginx auth_http's request headers are made from it.
struct LoginRequest {
  std::string user;      // Auth-User: the login name as the client gave it
  std::string secret;    // Auth-Pass: password or bearer token (never logged)
  std::string method;    // Auth-Method: "plain", "login", "xoauth2", "oauthbearer"
  unsigned attempt = 1;  // Auth-Login-Attempt: 1 for a connection's first login
  std::string client_ip;    // Client-IP: the real client (after a PROXY header)
  bool client_tls = false;  // Auth-SSL: the client's leg is TLS
  std::string tls_protocol;  // Auth-SSL-Protocol: "TLSv1.3" (with client_tls)
  std::string tls_cipher;    // Auth-SSL-Cipher: OpenSSL's name of the cipher
  // A PROXY header's source and destination, as nginx names them: Proxy-Protocol-Addr
  // / -Port (the client it names) and Proxy-Protocol-Server-Addr / -Port (the address
  // the client connected to at the balancer). Empty: no header.
  std::string proxy_protocol_ip;
  std::uint16_t proxy_protocol_port = 0;
  std::string proxy_protocol_server_ip;
  std::uint16_t proxy_protocol_server_port = 0;
};

// Where the session goes, and as whom.
struct Route {
  Backend backend;
  std::optional<std::string> login_user;      // Auth-User / destuser: log in as this user
  std::optional<std::string> login_password;  // Auth-Pass / pass: with this secret
  // A master login (Dovecot's): the user is login_user (else the client's), the
  // authentication identity and password are the configured master user's.
  bool master = false;
};

enum class LookupStatus : std::uint8_t { Routed, Refused, Unavailable };

struct LookupResult {
  LookupStatus status = LookupStatus::Unavailable;
  Route route;           // when Routed
  std::string message;   // Refused: the text of the client's NO; Unavailable: why (the log's)
  std::chrono::seconds wait{0};  // Auth-Wait: the answer waits this long
  bool from_cache = false;
};

}  // namespace imapscope::route
