// What the transport layer needs to know about listeners and upstreams. The app
// fills these from the config file and flags (app/config.hpp).
#pragma once

#include <memory>

#include "proxy/identify/signatures.hpp"
#include "proxy/policy/rule_set.hpp"
#include "proxy/session/observer.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/guard/guard.hpp"
#include "proxy/imap/limits.hpp"
#include "proxy/route/backends.hpp"
#include "proxy/route/telemetry.hpp"
#include "proxy/util/cidr.hpp"

namespace imapscope::transport {

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string to_string() const;
};

enum class UpstreamTls : std::uint8_t { None, Implicit, Starttls };

// How the mail server learns the client's address (otherwise it sees the proxy's):
// a PROXY protocol header before anything else (Dovecot: haproxy = yes on the
// listener, haproxy_trusted_networks), or Dovecot's ID forwarding (x-originating-ip
// and friends, sent by the proxy before the client's first command; the proxy must
// be in login_trusted_networks).
enum class ClientForwarding : std::uint8_t { None, ProxyV1, ProxyV2, ImapId };

// COMPRESS=DEFLATE on the client's leg (RFC 4978), offered to logged-in clients.
// - Proxy: the proxy's own, whatever the server does: less bandwidth to the client
//   for ~40 KiB more per compressed session (the inflater's window) and deflate CPU.
// - PassThrough: where the server offers COMPRESS and no rule can act on the session,
//   the client's COMPRESS goes to the server and the compressed streams are relayed
//   unchanged; the proxy inflates a copy of each to inspect (about 1/8 of deflate's
//   CPU, ~80 KiB per session for two inflaters). Elsewhere as Proxy.
enum class ClientCompress : std::uint8_t { Off, Proxy, PassThrough };

// LOGIN and AUTHENTICATE on a plain listener that offers STARTTLS, before TLS
// (Dovecot's disable_plaintext_auth): refused with [PRIVACYREQUIRED] and
// LOGINDISABLED advertised, so a password never crosses the network in clear;
// Loopback trusts clients on this machine (Dovecot counts them as secured); Allow
// takes them from anyone. A listener without a certificate can't offer TLS: it
// always takes them.
enum class PlaintextLogin : std::uint8_t { Refuse, Loopback, Allow };

struct UpstreamSettings {
  std::vector<Endpoint> addresses;  // tried in order
  UpstreamTls tls = UpstreamTls::None;
  std::string ca_file;              // empty: the system store
  bool verify = true;               // certificate and host name check
  std::string server_name;          // SNI and name to check; empty: the address's host
  std::chrono::milliseconds connect_timeout{10'000};
  ClientForwarding forward_client = ClientForwarding::None;
  // COMPRESS DEFLATE towards the server when it offers it (bandwidth to a distant
  // server, for CPU and ~110 KiB per session while output is compressed).
  bool compress = false;
};

// TLS 1.2 suites of Mozilla's "intermediate" profile (guidelines v5.7 without the
// DHE ones): ECDHE key exchange (forward secrecy) and AEAD ciphers only, so no
// static-RSA key exchange and no CBC/SHA-1 suites.
inline constexpr const char* kIntermediateCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

enum class TlsVersion : std::uint8_t { Tls12, Tls13 };

// What the client leg's TLS accepts (the upstream leg keeps OpenSSL's defaults, TLS >= 1.2).
struct TlsPolicy {
  TlsVersion min_version = TlsVersion::Tls12;
  std::string ciphers = kIntermediateCiphers;  // TLS 1.2, OpenSSL's cipher string syntax
  std::string ciphersuites;                    // TLS 1.3; empty: OpenSSL's default
  // A private key every local user can read is refused unless this is set.
  bool allow_world_readable_keys = false;
};

// A certificate chain (PEM, leaf first) and its private key.
struct CertificateFiles {
  std::string cert;
  std::string key;
};

struct ListenerSettings {
  std::string name;
  Endpoint listen;
  bool implicit_tls = false;             // 993 style; otherwise plain with STARTTLS when a cert is set
  // Chosen by the name the client asks for (SNI), RSA or ECDSA by what it supports;
  // the first is the default. Empty: no TLS on the client leg.
  std::vector<CertificateFiles> certificates;
  TlsPolicy tls_policy;
  PlaintextLogin plaintext_login = PlaintextLogin::Refuse;  // plain listeners with a certificate
  ClientCompress compress = ClientCompress::Off;
  // Every connection starts with a PROXY protocol header (v1 or v2), accepted only
  // from these networks; connections from elsewhere are refused.
  bool proxy_protocol = false;
  std::vector<util::Cidr> proxy_trusted;
  UpstreamSettings upstream;
};

// The listener's TLS mode as metrics label it: "implicit", "starttls" or "none".
inline std::string_view listener_tls_mode(const ListenerSettings& listener) {
  return listener.implicit_tls ? "implicit" : listener.certificates.empty() ? "none" : "starttls";
}

struct Timeouts {
  std::chrono::milliseconds tls_handshake{30'000};
  std::chrono::milliseconds greeting{30'000};
  // RFC 9051 §5.4: an idle client may be logged out after 30 minutes, not sooner;
  // clients re-issue IDLE every 29 minutes. The proxy waits a little longer.
  std::chrono::milliseconds idle{31 * 60'000};
  // From connect to a successful login. A client that trickles bytes (slowloris) or
  // never authenticates holds a socket and a server connection; Dovecot's own
  // imap-login gives up after three minutes, nginx's mail proxy after one.
  std::chrono::milliseconds login{60'000};
  // A command is in flight, the client has sent all of it, and the server has sent
  // nothing for this long (a hung or stopped server). Dovecot reports progress on
  // long commands ("* OK Searched ..", "* OK Hang in there..") well within it.
  std::chrono::milliseconds server_response{300'000};
  std::chrono::milliseconds shutdown_grace{10'000};
};

// Routing mode ("routing", --route-map, --route-http): every login is looked up and
// goes to the backend named for it; the listeners' upstreams are not used.
struct RoutingSettings {
  std::string http_url;  // an nginx auth_http-compatible service
  std::chrono::milliseconds http_timeout{5'000};
  std::string map_file;
  std::chrono::seconds cache_hit{300};  // answers kept: routes for minutes,
  std::chrono::seconds cache_miss{10};  // refusals for seconds
  std::string capabilities;             // the pre-login list; empty: what the backends share
  route::BackendTls backend_tls = route::BackendTls::None;  // for backends named without one
  std::string upstream_ca;              // empty: the system store
  bool verify = true;
  ClientForwarding forward_client = ClientForwarding::None;
  std::string master_user, master_password;  // for routes asking for a master login
  std::vector<route::Backend> backends;      // health-checked from the start (the map's are too)
  route::HealthSettings health;
  std::chrono::milliseconds kick_spread{10'000};  // a kick's BYEs spread over this
  bool enabled() const { return !http_url.empty() || !map_file.empty(); }
};

struct ProxySettings {
  std::vector<ListenerSettings> listeners;
  Timeouts timeouts;
  imap::DecoderLimits client_limits;
  imap::DecoderLimits server_limits;
  // Sessions in total and before login, the login penalty (proxy/guard/). A total or
  // pre-login limit of 0 is derived at start: the total from the descriptor limit,
  // the pre-login total half of it.
  guard::GuardSettings guard = guard::settings_with_derived_totals();
  unsigned threads = 0;  // event loops; 0: one per core
  // Client signatures (identification); null: the built-in rules/clients.json.
  std::shared_ptr<const identify::Signatures> signatures;
  // Rewrite rules, reloaded on SIGHUP; null: no rules.
  std::shared_ptr<policy::RuleStore> rules;
  // Who is told about sessions, bytes, TLS (the metrics); null: nobody.
  std::shared_ptr<session::Telemetry> telemetry;
  RoutingSettings routing;
  // Routing mode: the backend pool (the admin API shows and drains it; made by the
  // app so that it can) and who is told about lookups and backends; null: nobody.
  std::shared_ptr<route::Backends> backends;
  std::shared_ptr<route::RouteTelemetry> route_telemetry;
};

}  // namespace imapscope::transport
