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
#include <vector>

#include "proxy/guard/guard.hpp"
#include "proxy/imap/limits.hpp"
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

struct ListenerSettings {
  std::string name;
  Endpoint listen;
  bool implicit_tls = false;             // 993 style; otherwise plain with STARTTLS when a cert is set
  std::string cert_file;
  std::string key_file;
  bool login_disabled_until_tls = false; // plain listeners: LOGINDISABLED until STARTTLS
  ClientCompress compress = ClientCompress::Off;
  // Every connection starts with a PROXY protocol header (v1 or v2), accepted only
  // from these networks; connections from elsewhere are refused.
  bool proxy_protocol = false;
  std::vector<util::Cidr> proxy_trusted;
  UpstreamSettings upstream;
};

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
};

}  // namespace imapscope::transport
