#include "proxy/app/config.hpp"
#include "proxy/app/config_parts.hpp"
#include "proxy/app/config_routing.hpp"

#include <algorithm>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "proxy/imap/abnf.hpp"
#include "proxy/transport/server_tls.hpp"
#include "proxy/util/cidr.hpp"
#include "proxy/util/json_reader.hpp"
#include "proxy/util/private_files.hpp"

namespace imapscope::app {

std::chrono::milliseconds millis(util::JsonReader& r, const std::string& key, std::chrono::milliseconds fallback,
                                 std::uint64_t min) {
  return std::chrono::milliseconds(r.number(key, static_cast<std::uint64_t>(fallback.count()), min, 86'400'000));
}

transport::ClientForwarding parse_forwarding(const std::string& mode) {
  if (mode == "proxy-v1") return transport::ClientForwarding::ProxyV1;
  if (mode == "proxy-v2") return transport::ClientForwarding::ProxyV2;
  if (mode == "id") return transport::ClientForwarding::ImapId;
  return transport::ClientForwarding::None;
}

namespace {

using nlohmann::json;

using Reader = util::JsonReader;


transport::UpstreamSettings read_upstream(Reader r) {
  transport::UpstreamSettings u;
  const auto& addresses = r.array("addresses");
  if (addresses.empty()) r.fail("addresses", "needs at least one \"host:port\"");
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    const auto where = r.path("addresses") + "/" + std::to_string(i);
    if (!addresses[i].is_string()) throw ConfigError(where + ": must be a \"host:port\" string");
    u.addresses.push_back(parse_endpoint(addresses[i].get<std::string>(), where));
  }
  const auto tls = r.choice("tls", "none", {"none", "implicit", "starttls"});
  u.tls = tls == "implicit" ? transport::UpstreamTls::Implicit
          : tls == "starttls" ? transport::UpstreamTls::Starttls
                              : transport::UpstreamTls::None;
  u.ca_file = r.string("ca_file", "");
  u.verify = r.boolean("verify", true);
  u.server_name = r.string("server_name", "");
  u.connect_timeout = millis(r, "connect_timeout_ms", u.connect_timeout);
  u.compress = r.boolean("compress", false);
  u.forward_client = parse_forwarding(r.choice("forward_client", "none", {"none", "proxy-v1", "proxy-v2", "id"}));
  r.reject_unknown();
  return u;
}

std::vector<util::Cidr> read_networks(Reader& r, const std::string& key) {
  std::vector<util::Cidr> networks;
  const auto texts = r.strings(key);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto cidr = util::Cidr::parse(texts[i]);
    if (!cidr) r.fail(key + "/" + std::to_string(i), "\"" + texts[i] + "\" is not an address or CIDR block");
    networks.push_back(*cidr);
  }
  return networks;
}

// "compress": false / "off", true / "proxy", or "pass-through".
transport::ClientCompress read_client_compress(Reader& r) {
  if (!r.has("compress")) return transport::ClientCompress::Off;
  if (r.value()["compress"].is_boolean()) {
    return r.boolean("compress", false) ? transport::ClientCompress::Proxy : transport::ClientCompress::Off;
  }
  const auto mode = r.choice("compress", "off", {"off", "proxy", "pass-through"});
  return mode == "proxy" ? transport::ClientCompress::Proxy
         : mode == "pass-through" ? transport::ClientCompress::PassThrough
                                  : transport::ClientCompress::Off;
}

transport::PlaintextLogin parse_plaintext_login(const std::string& mode) {
  if (mode == "allow") return transport::PlaintextLogin::Allow;
  if (mode == "loopback") return transport::PlaintextLogin::Loopback;
  return transport::PlaintextLogin::Refuse;
}

// "plaintext_login": "refuse" (the default), "loopback" or "allow". The older
// "login_disabled_until_tls" still reads as it says: true refuses, false allows.
transport::PlaintextLogin read_plaintext_login(Reader& r) {
  if (r.has("login_disabled_until_tls")) {
    if (r.has("plaintext_login")) r.fail("login_disabled_until_tls", "is replaced by \"plaintext_login\": give only that");
    return r.boolean("login_disabled_until_tls", true) ? transport::PlaintextLogin::Refuse
                                                        : transport::PlaintextLogin::Allow;
  }
  return parse_plaintext_login(r.choice("plaintext_login", "refuse", {"refuse", "loopback", "allow"}));
}

// The TLS policy's fields given here, over base (the top level's, for a listener).
transport::TlsPolicy read_tls_policy(Reader r, transport::TlsPolicy policy) {
  if (r.has("min_version")) {
    policy.min_version = r.choice("min_version", "TLSv1.2", {"TLSv1.2", "TLSv1.3"}) == "TLSv1.3"
                             ? transport::TlsVersion::Tls13
                             : transport::TlsVersion::Tls12;
  }
  policy.ciphers = r.string("ciphers", policy.ciphers);
  policy.ciphersuites = r.string("ciphersuites", policy.ciphersuites);
  r.reject_unknown();
  if (const auto problem = transport::check_tls_policy(policy)) r.fail(problem->field, problem->reason);
  return policy;
}

// "cert" and "key" (one pair), then "certificates": [{"cert": ..., "key": ...}, ...].
std::vector<transport::CertificateFiles> read_certificates(Reader& r) {
  std::vector<transport::CertificateFiles> certificates;
  const auto cert = r.string("cert", "");
  const auto key = r.string("key", "");
  if (cert.empty() != key.empty()) r.fail(cert.empty() ? "cert" : "key", "goes with " + std::string(cert.empty() ? "key" : "cert"));
  if (!cert.empty()) certificates.push_back({cert, key});
  if (!r.has("certificates")) return certificates;
  const auto& list = r.array("certificates");
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_object()) r.fail("certificates/" + std::to_string(i), "must be {\"cert\": FILE, \"key\": FILE}");
    Reader item(list[i], r.file(), r.pointer() + "/certificates/" + std::to_string(i));
    transport::CertificateFiles files{item.string("cert", ""), item.string("key", "")};
    if (files.cert.empty()) item.fail("cert", "is required (a PEM certificate chain)");
    if (files.key.empty()) item.fail("key", "is required (its PEM private key)");
    item.reject_unknown();
    certificates.push_back(files);
  }
  return certificates;
}

// Listeners and the admin address bind an address: a host name would be resolved
// to who knows which (and start-up refuses one).
void require_ip_address(const transport::Endpoint& e, const std::string& where) {
  if (e.host.find('/') != std::string::npos || !util::Cidr::parse(e.host)) {
    throw ConfigError(where + ": \"" + e.host + "\" is not an IP address (one to listen on: 127.0.0.1, 0.0.0.0, ::1, ::)");
  }
}

transport::ListenerSettings read_listener(Reader r, std::size_t index, const transport::TlsPolicy& tls_policy) {
  transport::ListenerSettings l;
  l.name = r.string("name", "listener" + std::to_string(index));
  if (!r.has("listen")) r.fail("listen", "is required (\"host:port\")");
  l.listen = parse_endpoint(r.string("listen", ""), r.path("listen"));
  require_ip_address(l.listen, r.path("listen"));
  const auto tls = r.choice("tls", "none", {"none", "starttls", "implicit"});
  l.implicit_tls = tls == "implicit";
  l.certificates = read_certificates(r);
  if (tls != "none" && l.certificates.empty()) r.fail("tls", "\"" + tls + "\" needs cert and key");
  if (tls == "none" && !l.certificates.empty()) {
    r.fail(r.has("cert") ? "cert" : "certificates", "is set but tls is \"none\" (use \"starttls\")");
  }
  l.tls_policy = r.has("tls_policy") ? read_tls_policy(r.object("tls_policy"), tls_policy) : tls_policy;
  l.plaintext_login = read_plaintext_login(r);
  l.compress = read_client_compress(r);
  if (r.has("proxy_protocol")) {
    auto proxy = r.object("proxy_protocol");
    l.proxy_protocol = true;
    l.proxy_trusted = read_networks(proxy, "trusted");
    // Without a list, anyone could claim any address.
    if (l.proxy_trusted.empty()) proxy.fail("trusted", "needs the balancers' addresses or CIDR blocks");
    proxy.reject_unknown();
  }
  if (r.has("upstream")) l.upstream = read_upstream(r.object("upstream"));  // none: routing mode
  // The proxy's own COMPRESS towards the server comes first after login and would
  // leave nothing to pass through.
  if (l.compress == transport::ClientCompress::PassThrough && l.upstream.compress) {
    r.fail("compress", "\"pass-through\" can't be combined with the upstream's own \"compress\": true");
  }
  r.reject_unknown();
  return l;
}

util::LogLevel parse_level(const std::string& level, const std::string& where) {
  if (level == "debug") return util::LogLevel::Debug;
  if (level == "info") return util::LogLevel::Info;
  if (level == "warning") return util::LogLevel::Warning;
  if (level == "error") return util::LogLevel::Error;
  throw ConfigError(where + ": must be one of debug, info, warning, error");
}

util::LogFormat parse_log_format(const std::string& format, const std::string& where) {
  if (format == "keyvalue") return util::LogFormat::KeyValue;
  if (format == "json") return util::LogFormat::Json;
  throw ConfigError(where + ": must be one of json, keyvalue (not \"" + format + "\")");
}

}  // namespace

transport::Endpoint parse_endpoint(const std::string& text, const std::string& where) {
  transport::Endpoint e;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw ConfigError(where + ": \"" + text + "\" is not [address]:port");
    }
    e.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0) throw ConfigError(where + ": \"" + text + "\" is not host:port");
    e.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  char* end = nullptr;
  const long value = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || value < 0 || value > 65535) {
    throw ConfigError(where + ": port \"" + port + "\" is not a number from 0 to 65535");
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

namespace {

void read_transcripts(Reader r, inspect::InspectorOptions& o) {
  auto& w = o.transcripts.emplace();
  w.dir = r.string("dir", "");
  if (w.dir.empty()) r.fail("dir", "is required (the folder transcripts are written to)");
  w.max_file_bytes = r.number("max_file_mb", 64, 1, 1 << 20) << 20;
  w.max_total_bytes = r.number("max_total_mb", 1024, 1, 1 << 24) << 20;
  w.max_queued_bytes = r.number("max_queued_mb", 16, 1, 4096) << 20;
  o.body_cap = static_cast<std::size_t>(r.number("body_cap_kb", 0, 0, 1 << 20)) << 10;
  auto select = r.object("select");
  for (auto& user : select.strings("users")) o.selection.users.push_back(imap::ascii_lower(user));
  o.selection.clients = select.strings("clients");
  o.selection.addresses = read_networks(select, "addresses");
  o.selection.sample = select.real("sample", 1.0, 0.0, 1.0);
  select.reject_unknown();
  r.reject_unknown();
}

void read_live(Reader r, inspect::InspectorOptions& o) {
  o.live = r.boolean("enabled", true);
  o.live_limits.events = static_cast<std::size_t>(r.number("events", 256, 0, 1 << 20));
  o.live_limits.event_bytes = static_cast<std::size_t>(r.number("event_kb", 256, 1, 1 << 20)) << 10;
  o.live_limits.recent_closed = static_cast<std::size_t>(r.number("recent_closed", 32, 0, 4096));
  r.reject_unknown();
}

void read_diagnostics(Reader r, diagnose::Options& o) {
  o.enabled = r.boolean("enabled", true);
  o.state_file = r.string("state_file", "");
  o.state_entries = static_cast<std::size_t>(r.number("state_entries", o.state_entries, 1, 100'000'000));
  auto& t = o.thresholds;
  auto count = [&](const char* key, std::uint32_t& value) {
    value = static_cast<std::uint32_t>(r.number(key, value, 1, 1'000'000'000));
  };
  auto secs = [&](const char* key, std::chrono::seconds& value) {
    value = std::chrono::seconds(r.number(key, static_cast<std::uint64_t>(value.count()), 1, 30 * 86'400));
  };
  count("resync_min_messages", t.resync_min_messages);
  count("resync_repeat_min_messages", t.resync_repeat_min_messages);
  t.resync_repeat_min_bytes = r.number("resync_repeat_min_bytes", t.resync_repeat_min_bytes, 1, std::uint64_t{1} << 40);
  secs("resync_repeat_window_s", t.resync_repeat_window);
  secs("idle_short_s", t.idle_short);
  count("idle_churn_count", t.idle_churn_count);
  secs("keepalive_reaction_s", t.keepalive_reaction);
  count("keepalive_wakeups", t.keepalive_wakeups);
  count("folder_connections", t.folder_connections);
  count("user_connection_limit", t.user_connection_limit);
  count("user_connection_warn", t.user_connection_warn);
  count("error_repeats", t.error_repeats);
  secs("error_window_s", t.error_window);
  count("login_failures", t.login_failures);
  secs("login_failure_window_s", t.login_failure_window);
  count("deleted_messages", t.deleted_messages);
  count("poll_count", t.poll_count);
  secs("poll_interval_s", t.poll_interval);
  secs("timeout_silence_s", t.timeout_silence);
  if (t.user_connection_warn > t.user_connection_limit) {
    r.fail("user_connection_warn", "is above user_connection_limit (" + std::to_string(t.user_connection_limit) + ")");
  }
  r.reject_unknown();
}

// A token file is a secret: one every local user can read is refused.
std::string read_token_file(const std::string& path, const std::string& where) {
  std::string token;
  try {
    token = util::read_secret_file(path);
  } catch (const std::exception& e) {
    throw ConfigError(where + ": " + e.what());
  }
  if (token.size() < 16) throw ConfigError(where + ": the token in \"" + path + "\" is shorter than 16 characters");
  return token;
}

void read_admin_limits(Reader r, AdminLimits& l) {
  l.connections = static_cast<std::size_t>(r.number("connections", l.connections, 4, 100'000));
  l.streams = static_cast<std::size_t>(r.number("streams", l.streams, 0, 100'000));
  l.stream_max_s = r.number("stream_max_s", l.stream_max_s, 1, 7 * 86'400);
  l.head_timeout_ms = r.number("head_timeout_ms", l.head_timeout_ms, 100, 600'000);
  l.write_timeout_ms = r.number("write_timeout_ms", l.write_timeout_ms, 100, 600'000);
  r.reject_unknown();
}

}  // namespace

Config load_config_file(const std::string& path) {
  const json document = util::load_json_file(path);
  Config config;
  Reader root(document, path, "");
  config.log_level = parse_level(root.string("log_level", "info"), root.path("log_level"));
  config.log_format = parse_log_format(root.string("log_format", "keyvalue"), root.path("log_format"));
  if (root.has("admin")) {
    const auto admin = root.string("admin", "");
    if (admin == "none") {
      config.admin_enabled = false;
    } else {
      config.admin = parse_endpoint(admin, root.path("admin"));
      require_ip_address(config.admin, root.path("admin"));
    }
  }
  config.proxy.threads = static_cast<unsigned>(root.number("threads", 0, 0, 256));
  config.clients_file = root.string("clients", "");
  config.rules_path = root.string("rules", "");
  config.state_dir = root.string("state_dir", config.state_dir);
  if (config.state_dir.empty()) root.fail("state_dir", "must name a folder");
  if (root.has("user") || root.has("group")) {
    if (!root.has("user")) root.fail("group", "needs \"user\" too");
    try {
      config.run_as = find_account(root.string("user", ""), root.string("group", ""));
    } catch (const std::exception& e) {
      const std::string reason = e.what();
      const bool about_group = reason.rfind("no group", 0) == 0 || reason.rfind("group", 0) == 0;
      root.fail(about_group ? "group" : "user", reason);
    }
  }
  if (root.has("admin_token_file")) {
    config.admin_token = read_token_file(root.string("admin_token_file", ""), root.path("admin_token_file"));
  }
  config.admin_hosts = root.strings("admin_hosts");
  read_admin_limits(root.object("admin_limits"), config.admin_limits);
  if (root.has("metrics")) config.metrics = parse_endpoint(root.string("metrics", ""), root.path("metrics"));
  const auto names = root.choice("user_names", "hashed", {"clear", "hashed", "redacted"});
  config.inspector.user_names = names == "clear"      ? inspect::UserNames::Clear
                                : names == "redacted" ? inspect::UserNames::Redacted
                                                      : inspect::UserNames::Hashed;
  if (root.has("transcripts")) read_transcripts(root.object("transcripts"), config.inspector);
  read_live(root.object("live"), config.inspector);
  read_diagnostics(root.object("diagnostics"), config.diagnostics);
  if (root.has("routing")) read_routing(root.object("routing"), config.proxy.routing);

  auto timeouts = root.object("timeouts");
  auto& t = config.proxy.timeouts;
  t.tls_handshake = millis(timeouts, "tls_handshake_ms", t.tls_handshake);
  t.greeting = millis(timeouts, "greeting_ms", t.greeting);
  t.idle = millis(timeouts, "idle_ms", t.idle);
  t.login = millis(timeouts, "login_ms", t.login);
  t.server_response = millis(timeouts, "server_response_ms", t.server_response);
  t.shutdown_grace = millis(timeouts, "shutdown_grace_ms", t.shutdown_grace);
  timeouts.reject_unknown();

  auto limits = root.object("limits");
  auto& cl = config.proxy.client_limits;
  cl.max_line_length = limits.number("max_line_length", cl.max_line_length, 1024, 64u << 20);
  cl.max_literal_size = limits.number("max_literal_size", cl.max_literal_size, 0, std::uint64_t{1} << 40);
  cl.max_inline_literal = limits.number("max_inline_literal", cl.max_inline_literal, 0, 1u << 20);
  cl.max_list_depth = static_cast<unsigned>(limits.number("max_list_depth", cl.max_list_depth, 1, 10'000));
  cl.max_tag_length = limits.number("max_tag_length", cl.max_tag_length, 1, 4096);
  cl.max_pending_commands = limits.number("max_pending_commands", cl.max_pending_commands, 1, 100'000);
  cl.max_literal_before_login =
      limits.number("max_literal_before_login", cl.max_literal_before_login, 0, std::uint64_t{1} << 40);
  auto& guard = config.proxy.guard;
  // 0: derived at start (the total from the descriptor limit, the pre-login total half of it).
  guard.limits.max_sessions = limits.number("max_sessions", std::size_t{0}, 0, 10'000'000);
  guard.limits.max_prelogin = limits.number("max_prelogin_sessions", std::size_t{0}, 0, 10'000'000);
  guard.limits.max_prelogin_per_address =
      limits.number("max_prelogin_per_address", guard.limits.max_prelogin_per_address, 1, 10'000'000);
  guard.log_interval = std::chrono::seconds(limits.number("refusal_log_interval_s", guard.log_interval.count(), 1, 86'400));
  limits.reject_unknown();
  auto penalty = root.object("login_penalty");
  auto& p = guard.penalty;
  p.enabled = penalty.boolean("enabled", p.enabled);
  p.initial = millis(penalty, "initial_ms", p.initial);
  p.max = millis(penalty, "max_ms", p.max);
  p.expire = std::chrono::seconds(penalty.number("expire_s", p.expire.count(), 1, 7 * 86'400));
  p.max_addresses = penalty.number("max_addresses", p.max_addresses, 1, 10'000'000);
  if (p.max < p.initial) penalty.fail("max_ms", "must not be less than initial_ms");
  penalty.reject_unknown();
  config.proxy.server_limits = cl;
  // A server's messages are the server's business: literals of any size pass.
  config.proxy.server_limits.max_literal_size = std::numeric_limits<std::uint64_t>::max();

  transport::TlsPolicy tls_policy;
  tls_policy.allow_world_readable_keys = root.boolean("allow_world_readable_keys", false);
  if (root.has("tls_policy")) tls_policy = read_tls_policy(root.object("tls_policy"), tls_policy);
  const auto& listeners = root.array("listeners");
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    config.proxy.listeners.push_back(
        read_listener(Reader(listeners[i], path, "/listeners/" + std::to_string(i)), i, tls_policy));
  }
  root.reject_unknown();
  return config;
}

namespace {
long long count_flag(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 0 || n > 10'000'000) {
    throw ConfigError("flag " + flag + ": \"" + v + "\" is not 0..10000000");
  }
  return n;
}
}  // namespace

Flags parse_flags(const std::vector<std::string>& args) {
  Flags f;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw ConfigError("flag " + a + ": needs a value");
      return args[++i];
    };
    if (a == "--config") f.config_file = value();
    else if (a == "--listen") f.listen.push_back(value());
    else if (a == "--listen-tls") f.listen_tls.push_back(value());
    else if (a == "--route-map") f.route_map = value();
    else if (a == "--route-http") f.route_http = value();
    else if (a == "--tls-cert") f.tls_cert.push_back(value());
    else if (a == "--tls-key") f.tls_key.push_back(value());
    else if (a == "--tls-min-version") f.tls_min_version = value();
    else if (a == "--tls-ciphers") f.tls_ciphers = value();
    else if (a == "--tls-ciphersuites") f.tls_ciphersuites = value();
    else if (a == "--allow-world-readable-keys") f.allow_world_readable_keys = true;
    else if (a == "--upstream") f.upstream.push_back(value());
    else if (a == "--upstream-tls") f.upstream_tls = true;
    else if (a == "--upstream-starttls") f.upstream_starttls = true;
    else if (a == "--upstream-ca") f.upstream_ca = value();
    else if (a == "--upstream-insecure") f.upstream_insecure = true;
    else if (a == "--login-disabled-until-tls") f.plaintext_login = "refuse";  // the default now; kept for old scripts
    else if (a == "--plaintext-login") f.plaintext_login = value();
    else if (a == "--compress") f.compress = transport::ClientCompress::Proxy;
    else if (a == "--compress-pass-through") f.compress = transport::ClientCompress::PassThrough;
    else if (a == "--upstream-compress") f.upstream_compress = true;
    else if (a == "--diagnostics-state") f.diagnostics_state = value();
    else if (a == "--no-diagnostics") f.no_diagnostics = true;
    else if (a == "--state-dir") f.state_dir = value();
    else if (a == "--user") f.user = value();
    else if (a == "--group") f.group = value();
    else if (a == "--proxy-protocol-from") f.proxy_protocol_from.push_back(value());
    else if (a == "--upstream-forward-client") f.upstream_forward = value();
    else if (a == "--admin") f.admin = value();
    else if (a == "--admin-token-file") f.admin_token_file = value();
    else if (a == "--metrics") f.metrics = value();
    else if (a == "--clients") f.clients = value();
    else if (a == "--rules") f.rules = value();
    else if (a == "--transcripts") f.transcripts = value();
    else if (a == "--log-level") f.log_level = value();
    else if (a == "--max-sessions") f.max_sessions = count_flag(a, value());
    else if (a == "--max-prelogin") f.max_prelogin = count_flag(a, value());
    else if (a == "--max-prelogin-per-address") f.max_prelogin_per_address = count_flag(a, value());
    else if (a == "--no-login-penalty") f.no_login_penalty = true;
    else if (a == "--log-format") f.log_format = value();
    else if (a == "--threads") {
      const auto v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 256) throw ConfigError("flag --threads: \"" + v + "\" is not 0..256");
      f.threads = static_cast<int>(n);
    } else {
      throw ConfigError("unknown flag " + a + " (see --help)");
    }
  }
  if (!f.plaintext_login.empty() && f.plaintext_login != "refuse" && f.plaintext_login != "loopback" &&
      f.plaintext_login != "allow") {
    throw ConfigError("flag --plaintext-login: \"" + f.plaintext_login + "\" is not refuse, loopback or allow");
  }
  if (f.upstream_tls && f.upstream_starttls) throw ConfigError("flags --upstream-tls and --upstream-starttls exclude each other");
  if (f.tls_cert.size() != f.tls_key.size()) {
    throw ConfigError("flags --tls-cert and --tls-key go in pairs: " + std::to_string(f.tls_cert.size()) +
                      " certificates, " + std::to_string(f.tls_key.size()) + " keys");
  }
  if (!f.tls_min_version.empty() && f.tls_min_version != "TLSv1.2" && f.tls_min_version != "TLSv1.3") {
    throw ConfigError("flag --tls-min-version: \"" + f.tls_min_version + "\" is not TLSv1.2 or TLSv1.3");
  }
  return f;
}

namespace {

// --tls-cert/--tls-key pairs replace every listener's certificates; the policy
// flags change every listener's policy.
void apply_tls_flags(const Flags& f, std::vector<transport::ListenerSettings>& listeners) {
  for (auto& l : listeners) {
    if (!f.tls_cert.empty()) {
      l.certificates.clear();
      for (std::size_t i = 0; i < f.tls_cert.size(); ++i) l.certificates.push_back({f.tls_cert[i], f.tls_key[i]});
    }
    auto& p = l.tls_policy;
    if (!f.tls_min_version.empty()) {
      p.min_version = f.tls_min_version == "TLSv1.3" ? transport::TlsVersion::Tls13 : transport::TlsVersion::Tls12;
    }
    if (!f.tls_ciphers.empty()) p.ciphers = f.tls_ciphers;
    if (!f.tls_ciphersuites.empty()) p.ciphersuites = f.tls_ciphersuites;
    if (f.allow_world_readable_keys) p.allow_world_readable_keys = true;
    if (const auto problem = transport::check_tls_policy(p)) {
      throw ConfigError("flag --tls-" + problem->field + ": " + problem->reason);
    }
  }
}

}  // namespace

Config build_config(const Flags& f) {
  Config config = f.config_file.empty() ? Config{} : load_config_file(f.config_file);
  if (!f.log_level.empty()) config.log_level = parse_level(f.log_level, "flag --log-level");
  if (!f.log_format.empty()) config.log_format = parse_log_format(f.log_format, "flag --log-format");
  if (f.admin == "none") {
    config.admin_enabled = false;
  } else if (!f.admin.empty()) {
    config.admin = parse_endpoint(f.admin, "flag --admin");
    require_ip_address(config.admin, "flag --admin");
    config.admin_enabled = true;
  }
  if (f.threads >= 0) config.proxy.threads = static_cast<unsigned>(f.threads);
  auto& limits = config.proxy.guard.limits;
  if (f.max_sessions >= 0) limits.max_sessions = static_cast<std::size_t>(f.max_sessions);
  if (f.max_prelogin >= 0) limits.max_prelogin = static_cast<std::size_t>(f.max_prelogin);
  if (f.max_prelogin_per_address > 0) limits.max_prelogin_per_address = static_cast<std::size_t>(f.max_prelogin_per_address);
  if (f.no_login_penalty) config.proxy.guard.penalty.enabled = false;
  if (!f.clients.empty()) config.clients_file = f.clients;
  if (!f.state_dir.empty()) config.state_dir = f.state_dir;
  if (!f.user.empty() || !f.group.empty()) {
    const auto user = !f.user.empty() ? f.user : config.run_as ? config.run_as->user : std::string();
    if (user.empty()) throw ConfigError("flag --group: needs --user too");
    const auto group = !f.group.empty() ? f.group : f.user.empty() && config.run_as ? config.run_as->group : std::string();
    try {
      config.run_as = find_account(user, group);
    } catch (const std::exception& e) {
      throw ConfigError(std::string(!f.user.empty() ? "flag --user" : "flag --group") + ": " + e.what());
    }
  }
  // Loaded once, here: the flag's file replaces the config's without reading both.
  if (!config.clients_file.empty()) {
    config.proxy.signatures = std::make_shared<const identify::Signatures>(identify::load_signatures(config.clients_file));
  }
  if (!f.transcripts.empty()) {
    if (!config.inspector.transcripts) config.inspector.transcripts.emplace();
    config.inspector.transcripts->dir = f.transcripts;
  }
  if (!f.diagnostics_state.empty()) config.diagnostics.state_file = f.diagnostics_state;
  if (f.no_diagnostics) config.diagnostics.enabled = false;
  if (!f.admin_token_file.empty()) config.admin_token = read_token_file(f.admin_token_file, "flag --admin-token-file");
  if (!f.metrics.empty()) config.metrics = parse_endpoint(f.metrics, "flag --metrics");
  if (!f.rules.empty()) config.rules_path = f.rules;
  if (!config.rules_path.empty()) {
    const auto& signatures = config.proxy.signatures ? *config.proxy.signatures : identify::builtin_signatures();
    config.proxy.rules = std::make_shared<policy::RuleStore>(config.rules_path, signatures.families);
    config.proxy.rules->load_or_throw();  // a bad rule file at start-up ends the program
  }

  auto& routing = config.proxy.routing;
  if (!f.route_map.empty()) routing.map_file = f.route_map;
  if (!f.route_http.empty()) {
    if (f.route_http.rfind("http://", 0) != 0) throw ConfigError("flag --route-http: \"" + f.route_http + "\" is not an http:// URL");
    routing.http_url = f.route_http;
  }

  // Upstream from flags, over the config's (the first listener's) upstream.
  transport::UpstreamSettings upstream;
  if (!config.proxy.listeners.empty()) upstream = config.proxy.listeners.front().upstream;
  const bool upstream_flags = !f.upstream.empty() || f.upstream_tls || f.upstream_starttls || !f.upstream_ca.empty() ||
                              f.upstream_insecure || !f.upstream_forward.empty() || f.upstream_compress;
  if (!f.upstream.empty()) {
    upstream.addresses.clear();
    for (const auto& u : f.upstream) upstream.addresses.push_back(parse_endpoint(u, "flag --upstream"));
  }
  if (f.upstream_tls) upstream.tls = transport::UpstreamTls::Implicit;
  if (f.upstream_starttls) upstream.tls = transport::UpstreamTls::Starttls;
  if (!f.upstream_ca.empty()) upstream.ca_file = f.upstream_ca;
  if (f.upstream_insecure) upstream.verify = false;
  if (f.upstream_compress) upstream.compress = true;
  if (!f.upstream_forward.empty()) {
    static const std::set<std::string> modes = {"none", "proxy-v1", "proxy-v2", "id"};
    if (!modes.count(f.upstream_forward)) {
      throw ConfigError("flag --upstream-forward-client: \"" + f.upstream_forward + "\" is not none, proxy-v1, proxy-v2 or id");
    }
    upstream.forward_client = parse_forwarding(f.upstream_forward);
  }
  std::vector<util::Cidr> proxy_from;
  for (const auto& text : f.proxy_protocol_from) {
    const auto cidr = util::Cidr::parse(text);
    if (!cidr) throw ConfigError("flag --proxy-protocol-from: \"" + text + "\" is not an address or CIDR block");
    proxy_from.push_back(*cidr);
  }

  // TLS for listeners made from flags: the config's top-level policy if any (the
  // first listener's), then the flags over it for every listener.
  transport::TlsPolicy flag_policy;
  if (!config.proxy.listeners.empty()) flag_policy = config.proxy.listeners.front().tls_policy;
  if (!f.listen.empty() || !f.listen_tls.empty()) {
    config.proxy.listeners.clear();
    auto add = [&](const std::string& address, bool implicit) {
      transport::ListenerSettings l;
      l.name = (implicit ? "imaps-" : "imap-") + std::to_string(config.proxy.listeners.size());
      l.listen = parse_endpoint(address, implicit ? "flag --listen-tls" : "flag --listen");
      require_ip_address(l.listen, implicit ? "flag --listen-tls" : "flag --listen");
      l.implicit_tls = implicit;
      l.tls_policy = flag_policy;
      if (!f.plaintext_login.empty()) l.plaintext_login = parse_plaintext_login(f.plaintext_login);
      l.compress = f.compress;
      l.proxy_protocol = !proxy_from.empty();
      l.proxy_trusted = proxy_from;
      l.upstream = upstream;
      config.proxy.listeners.push_back(l);
    };
    for (const auto& a : f.listen) add(a, false);
    for (const auto& a : f.listen_tls) add(a, true);
  } else {
    for (auto& l : config.proxy.listeners) {
      if (upstream_flags) l.upstream = upstream;
      if (!f.plaintext_login.empty()) l.plaintext_login = parse_plaintext_login(f.plaintext_login);
      if (f.compress != transport::ClientCompress::Off) l.compress = f.compress;
      if (!proxy_from.empty()) {
        l.proxy_protocol = true;
        l.proxy_trusted = proxy_from;
      }
    }
  }
  if (config.proxy.listeners.empty()) throw ConfigError("nothing to listen on: give --listen/--listen-tls or --config");
  apply_tls_flags(f, config.proxy.listeners);
  for (const auto& l : config.proxy.listeners) {
    if (routing.enabled() && !l.upstream.addresses.empty()) {
      throw ConfigError("listener " + l.name + ": an upstream and routing exclude each other (routing picks each"
                        " user's backend): drop --upstream or the listener's \"upstream\"");
    }
    if (!routing.enabled() && l.upstream.addresses.empty()) {
      throw ConfigError("listener " + l.name + ": no upstream (give --upstream HOST:PORT, or --route-map / --route-http)");
    }
    if (l.implicit_tls && l.certificates.empty()) {
      throw ConfigError("listener " + l.name + ": implicit TLS needs --tls-cert and --tls-key");
    }
    if (l.compress == transport::ClientCompress::PassThrough && l.upstream.compress) {
      throw ConfigError("listener " + l.name + ": --compress-pass-through can't be combined with --upstream-compress");
    }
  }
  config.diagnostics.user_names = config.inspector.user_names;
  return config;
}

bool wants_help(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(), [](const std::string& a) { return a == "-h" || a == "--help"; });
}

std::string usage() {
  return R"(usage: imapscope [--config FILE] [flags]        run the proxy
       imapscope --check-config FILE [flags]     validate settings, print them, exit
       imapscope decode FILE...                  replay C:/S: transcripts through the codec
       imapscope COMMAND --help                  a command's own usage (inspect, replay, decode)
       imapscope inspect [--session N] [--command NAME] [--from T] [--to T]
                         [--summary] [--json] [--pcap OUT.pcapng] FILE...
                                                 read transcripts (--transcripts DIR) back
       imapscope replay FILE... --server HOST:PORT --user U --password-file F
                        [--session N] [--tls] [--insecure] [--ca FILE] [--max-wait-ms N]
                        [--timeout-ms N] [--json]
                                                 replay a recorded session's commands against a
                                                 server and report the answers that differ

Flags (over the config file):
  --listen HOST:PORT         plain listener; offers STARTTLS when a certificate is given (repeatable)
  --listen-tls HOST:PORT     implicit-TLS listener, 993 style (repeatable)
  --tls-cert FILE            certificate chain (PEM) for the client side; repeat with --tls-key
                             for more (RSA and ECDSA, other names: chosen by SNI; the first
                             is the default). SIGHUP reloads them
  --tls-key FILE             its private key (PEM); refused when every user can read it
  --allow-world-readable-keys  load such a key anyway
  --tls-min-version V        TLSv1.2 (default) or TLSv1.3, client side
  --tls-ciphers LIST         TLS 1.2 ciphers, OpenSSL syntax (default: Mozilla intermediate,
                             ECDHE with AES-GCM or ChaCha20-Poly1305)
  --tls-ciphersuites LIST    TLS 1.3 suites (default: OpenSSL's)
  --plaintext-login MODE     LOGIN/AUTHENTICATE before STARTTLS on a plain listener with a
                             certificate: refuse (default: LOGINDISABLED, [PRIVACYREQUIRED]),
                             loopback (taken from 127.0.0.0/8 and ::1 only), allow
  --compress                 offer COMPRESS=DEFLATE to logged-in clients (RFC 4978), the proxy's own
  --compress-pass-through    offer it too, and pass the client's COMPRESS to a server that offers it:
                             the compressed streams are relayed unchanged where no rule acts
  --upstream-compress        turn COMPRESS=DEFLATE on towards the server when it offers it
  --upstream HOST:PORT       the mail server; repeat for fallbacks, tried in order
  --upstream-tls             implicit TLS towards the server
  --upstream-starttls        STARTTLS towards the server
  --upstream-ca FILE         CA certificates to verify the server (default: the system store)
  --upstream-insecure        do NOT verify the server's certificate (says so in the log)
  --upstream-forward-client MODE
                             tell the server the client's address: proxy-v1, proxy-v2
                             (PROXY protocol header), id (Dovecot's ID forwarding), none
  --route-map FILE           routing mode: each user to the backend this map names (user,
                             @domain, glob, * default; docs/configuration.md "Routing"); SIGHUP
                             reloads it. No --upstream then
  --route-http URL           routing mode: ask this nginx auth_http-compatible service (http://)
                             where each login goes; with --route-map, for users the map lacks
  --proxy-protocol-from CIDR listeners require a PROXY protocol header (v1 or v2) and take
                             it only from this network (repeatable); others are refused
  --admin HOST:PORT          metrics (/metrics), admin API (/api/...) and the live
                             sessions page (/) (default 127.0.0.1:9143; "none": off)
  --admin-token-file FILE    the admin token (first line, 16+ characters; not readable by
                             others): default STATE_DIR/admin-token, made at first start.
                             Every /api/* request and the page need it (docs/security.md)
  --metrics HOST:PORT        /metrics, /healthz and /readyz alone, open, on an address of
                             their own (default: none; they are on --admin too)
  --threads N                event loops (default: one per core)
  --max-sessions N           sessions in total; more get "* BYE [UNAVAILABLE]" (default 0: from the
                             descriptor limit, two per session)
  --max-prelogin N           sessions not logged in yet; when full the oldest is ended to make room
                             (default 0: half of --max-sessions)
  --max-prelogin-per-address N
                             sessions not logged in yet per client address (IPv6: per /64);
                             more get "* BYE [UNAVAILABLE]" (default 128)
  --no-login-penalty         don't hold back logins after failed ones from the same address
  --clients FILE             client signatures for identification (default: the
                             built-in copy of rules/clients.json)
  --rules PATH               rewrite rules: a JSON rule file or a directory of them,
                             e.g. rules/quirks (default: none); SIGHUP reloads them
  --state-dir DIR            owner-only folder for the proxy's secrets and state (default
                             /var/lib/imapscope; made 0700 if missing, refused if others can write it)
  --user USER                once the listeners and the admin address are bound and the keys
                             read, run as USER (its groups too) for good (default: as started)
  --group GROUP              with --user: this group rather than the user's own
  --diagnostics-state FILE   keep the last UIDVALIDITY per user and mailbox in FILE across restarts
  --no-diagnostics           don't look for client behaviours that cost servers (docs/diagnostics.md)
  --transcripts DIR          write a transcript of every session to DIR (JSON lines,
                             credentials redacted; selection and limits: config file)
  --log-level LEVEL          debug, info, warning, error
  --log-format FORMAT        keyvalue (default) or json (one object per line, for log shippers);
                             under systemd's journal, key=value lines leave the time to it
  -h, --help                 this text

Config file: JSON; every key and flag: docs/configuration.md.
)";
}

}  // namespace imapscope::app
