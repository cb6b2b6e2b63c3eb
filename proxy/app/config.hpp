// imapscope's settings: a JSON config file, then command-line flags over it.
// Start-up only: errors are exceptions (ConfigError) that main turns into a
// message naming the file, the key (a JSON pointer) or flag, and the reason.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <optional>

#include "proxy/app/privileges.hpp"
#include "proxy/diagnose/thresholds.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/transport/settings.hpp"
#include "proxy/util/json_reader.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::app {

using ConfigError = util::InputError;

// The admin address's HTTP budgets ("admin_limits"): what keeps /healthz answered.
struct AdminLimits {
  std::size_t connections = 64;  // requests being read or answered
  std::size_t streams = 16;      // live tails open at once
  std::uint64_t stream_max_s = 3600;
  std::uint64_t head_timeout_ms = 5000;
  std::uint64_t write_timeout_ms = 10000;
};

struct Config {
  transport::ProxySettings proxy;
  transport::Endpoint admin{"127.0.0.1", 9143};  // metrics, the admin API and the live page
  bool admin_enabled = true;
  // From admin_token_file; empty: <state_dir>/admin-token, made owner-only at first start.
  std::string admin_token;
  std::vector<std::string> admin_hosts;  // more names the Host may give (a reverse proxy's)
  AdminLimits admin_limits;
  std::optional<transport::Endpoint> metrics;  // /metrics and the probes alone, open
  // Owner-only folder of what the proxy keeps between runs (secrets, state).
  std::string state_dir = "/var/lib/imapscope";
  // The unprivileged account to become once everything is bound and loaded ("user",
  // "group"); none: stay as started.
  std::optional<Account> run_as;
  inspect::InspectorOptions inspector;  // transcripts (when configured) and the live view
  diagnose::Options diagnostics;        // findings about client behaviour
  std::string clients_file;  // client signatures; empty: built in (loaded by build_config)
  std::string rules_path;    // a rule file or a directory of them; empty: no rules
  util::LogLevel log_level = util::LogLevel::Info;
  util::LogFormat log_format = util::LogFormat::KeyValue;
};

// Reads a config file; throws ConfigError("FILE: /listeners/0/tls: must be ...").
Config load_config_file(const std::string& path);

// "host:port", "[v6]:port"; throws ConfigError naming `where`.
transport::Endpoint parse_endpoint(const std::string& text, const std::string& where);

// Applies command-line flags (argv without the program name) over config. Returns
// the flags it did not know, in order, for the caller to report.
struct Flags {
  std::string config_file;
  std::vector<std::string> listen, listen_tls, upstream, proxy_protocol_from;
  std::vector<std::string> tls_cert, tls_key;  // in pairs
  std::string tls_min_version, tls_ciphers, tls_ciphersuites;
  bool allow_world_readable_keys = false;
  std::string upstream_ca, upstream_forward, admin, admin_token_file, log_level, log_format, clients, rules,
      transcripts, diagnostics_state, state_dir, user, group, metrics;
  std::string plaintext_login;  // refuse, loopback, allow; empty: the config's (default refuse)
  std::string route_map, route_http;  // routing mode's sources; empty: the config's
  bool upstream_tls = false, upstream_starttls = false, upstream_insecure = false,
       upstream_compress = false, no_diagnostics = false;
  transport::ClientCompress compress = transport::ClientCompress::Off;
  int threads = -1;
  // Limits before login (-1: not given); --no-login-penalty.
  long long max_sessions = -1, max_prelogin = -1, max_prelogin_per_address = -1;
  bool no_login_penalty = false;
};
Flags parse_flags(const std::vector<std::string>& args);
Config build_config(const Flags& flags);

std::string usage();
// -h or --help among a command's arguments: it prints its usage and exits 0.
bool wants_help(const std::vector<std::string>& args);

}  // namespace imapscope::app
