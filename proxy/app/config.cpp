#include "proxy/app/config.hpp"

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "proxy/imap/abnf.hpp"
#include "proxy/util/cidr.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::app {
namespace {

using nlohmann::json;

using Reader = util::JsonReader;

std::chrono::milliseconds millis(Reader& r, const std::string& key, std::chrono::milliseconds fallback) {
  return std::chrono::milliseconds(r.number(key, static_cast<std::uint64_t>(fallback.count()), 1, 86'400'000));
}

transport::ClientForwarding parse_forwarding(const std::string& mode) {
  if (mode == "proxy-v1") return transport::ClientForwarding::ProxyV1;
  if (mode == "proxy-v2") return transport::ClientForwarding::ProxyV2;
  if (mode == "id") return transport::ClientForwarding::ImapId;
  return transport::ClientForwarding::None;
}

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

transport::ListenerSettings read_listener(Reader r, std::size_t index) {
  transport::ListenerSettings l;
  l.name = r.string("name", "listener" + std::to_string(index));
  if (!r.has("listen")) r.fail("listen", "is required (\"host:port\")");
  l.listen = parse_endpoint(r.string("listen", ""), r.path("listen"));
  const auto tls = r.choice("tls", "none", {"none", "starttls", "implicit"});
  l.implicit_tls = tls == "implicit";
  l.cert_file = r.string("cert", "");
  l.key_file = r.string("key", "");
  if (tls != "none" && (l.cert_file.empty() || l.key_file.empty())) r.fail("tls", "\"" + tls + "\" needs cert and key");
  if (tls == "none" && !l.cert_file.empty()) r.fail("cert", "is set but tls is \"none\" (use \"starttls\")");
  l.login_disabled_until_tls = r.boolean("login_disabled_until_tls", false);
  l.compress = read_client_compress(r);
  if (r.has("proxy_protocol")) {
    auto proxy = r.object("proxy_protocol");
    l.proxy_protocol = true;
    l.proxy_trusted = read_networks(proxy, "trusted");
    // Without a list, anyone could claim any address.
    if (l.proxy_trusted.empty()) proxy.fail("trusted", "needs the balancers' addresses or CIDR blocks");
    proxy.reject_unknown();
  }
  if (!r.has("upstream")) r.fail("upstream", "is required");
  l.upstream = read_upstream(r.object("upstream"));
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

// Host names are resolved later; only a literal loopback address or "localhost"
// counts as staying on this machine.
bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  const auto cidr = util::Cidr::parse("127.0.0.0/8");
  return cidr->contains(host);
}

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

std::string read_token_file(const std::string& path, const std::string& where) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) throw ConfigError(where + ": can't read the token file \"" + path + "\"");
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16) throw ConfigError(where + ": the token in \"" + path + "\" is shorter than 16 characters");
  return token;
}

}  // namespace

Config load_config_file(const std::string& path) {
  const json document = util::load_json_file(path);
  Config config;
  Reader root(document, path, "");
  config.log_level = parse_level(root.string("log_level", "info"), root.path("log_level"));
  if (root.has("admin")) {
    const auto admin = root.string("admin", "");
    if (admin == "none") {
      config.admin_enabled = false;
    } else {
      config.admin = parse_endpoint(admin, root.path("admin"));
    }
  }
  config.proxy.threads = static_cast<unsigned>(root.number("threads", 0, 0, 256));
  config.clients_file = root.string("clients", "");
  config.rules_path = root.string("rules", "");
  if (root.has("admin_token_file")) {
    config.admin_token = read_token_file(root.string("admin_token_file", ""), root.path("admin_token_file"));
  }
  const auto names = root.choice("user_names", "hashed", {"clear", "hashed", "redacted"});
  config.inspector.user_names = names == "clear"      ? inspect::UserNames::Clear
                                : names == "redacted" ? inspect::UserNames::Redacted
                                                      : inspect::UserNames::Hashed;
  if (root.has("transcripts")) read_transcripts(root.object("transcripts"), config.inspector);
  read_live(root.object("live"), config.inspector);
  read_diagnostics(root.object("diagnostics"), config.diagnostics);

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

  const auto& listeners = root.array("listeners");
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    config.proxy.listeners.push_back(
        read_listener(Reader(listeners[i], path, "/listeners/" + std::to_string(i)), i));
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
    else if (a == "--tls-cert") f.tls_cert = value();
    else if (a == "--tls-key") f.tls_key = value();
    else if (a == "--upstream") f.upstream.push_back(value());
    else if (a == "--upstream-tls") f.upstream_tls = true;
    else if (a == "--upstream-starttls") f.upstream_starttls = true;
    else if (a == "--upstream-ca") f.upstream_ca = value();
    else if (a == "--upstream-insecure") f.upstream_insecure = true;
    else if (a == "--login-disabled-until-tls") f.login_disabled = true;
    else if (a == "--compress") f.compress = transport::ClientCompress::Proxy;
    else if (a == "--compress-pass-through") f.compress = transport::ClientCompress::PassThrough;
    else if (a == "--upstream-compress") f.upstream_compress = true;
    else if (a == "--diagnostics-state") f.diagnostics_state = value();
    else if (a == "--no-diagnostics") f.no_diagnostics = true;
    else if (a == "--proxy-protocol-from") f.proxy_protocol_from.push_back(value());
    else if (a == "--upstream-forward-client") f.upstream_forward = value();
    else if (a == "--admin") f.admin = value();
    else if (a == "--admin-token-file") f.admin_token_file = value();
    else if (a == "--clients") f.clients = value();
    else if (a == "--rules") f.rules = value();
    else if (a == "--transcripts") f.transcripts = value();
    else if (a == "--log-level") f.log_level = value();
    else if (a == "--max-sessions") f.max_sessions = count_flag(a, value());
    else if (a == "--max-prelogin") f.max_prelogin = count_flag(a, value());
    else if (a == "--max-prelogin-per-address") f.max_prelogin_per_address = count_flag(a, value());
    else if (a == "--no-login-penalty") f.no_login_penalty = true;
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
  if (f.upstream_tls && f.upstream_starttls) throw ConfigError("flags --upstream-tls and --upstream-starttls exclude each other");
  return f;
}

Config build_config(const Flags& f) {
  Config config = f.config_file.empty() ? Config{} : load_config_file(f.config_file);
  if (!f.log_level.empty()) config.log_level = parse_level(f.log_level, "flag --log-level");
  if (f.admin == "none") {
    config.admin_enabled = false;
  } else if (!f.admin.empty()) {
    config.admin = parse_endpoint(f.admin, "flag --admin");
    config.admin_enabled = true;
  }
  if (f.threads >= 0) config.proxy.threads = static_cast<unsigned>(f.threads);
  auto& limits = config.proxy.guard.limits;
  if (f.max_sessions >= 0) limits.max_sessions = static_cast<std::size_t>(f.max_sessions);
  if (f.max_prelogin >= 0) limits.max_prelogin = static_cast<std::size_t>(f.max_prelogin);
  if (f.max_prelogin_per_address > 0) limits.max_prelogin_per_address = static_cast<std::size_t>(f.max_prelogin_per_address);
  if (f.no_login_penalty) config.proxy.guard.penalty.enabled = false;
  if (!f.clients.empty()) config.clients_file = f.clients;
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
  // The admin address shows who is logged in and can start captures: beyond this
  // machine only with a token.
  if (config.admin_enabled && config.admin_token.empty() && !is_loopback(config.admin.host)) {
    throw ConfigError("admin address " + config.admin.host + ":" + std::to_string(config.admin.port) +
                      " is not a loopback address: give a token (admin_token_file / --admin-token-file) or use 127.0.0.1");
  }
  if (!f.rules.empty()) config.rules_path = f.rules;
  if (!config.rules_path.empty()) {
    const auto& signatures = config.proxy.signatures ? *config.proxy.signatures : identify::builtin_signatures();
    config.proxy.rules = std::make_shared<policy::RuleStore>(config.rules_path, signatures.families);
    config.proxy.rules->load_or_throw();  // a bad rule file at start-up ends the program
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

  if (!f.listen.empty() || !f.listen_tls.empty()) {
    config.proxy.listeners.clear();
    auto add = [&](const std::string& address, bool implicit) {
      transport::ListenerSettings l;
      l.name = (implicit ? "imaps-" : "imap-") + std::to_string(config.proxy.listeners.size());
      l.listen = parse_endpoint(address, implicit ? "flag --listen-tls" : "flag --listen");
      l.implicit_tls = implicit;
      l.cert_file = f.tls_cert;
      l.key_file = f.tls_key;
      l.login_disabled_until_tls = f.login_disabled;
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
      if (!f.tls_cert.empty()) l.cert_file = f.tls_cert;
      if (!f.tls_key.empty()) l.key_file = f.tls_key;
      if (f.login_disabled) l.login_disabled_until_tls = true;
      if (f.compress != transport::ClientCompress::Off) l.compress = f.compress;
      if (!proxy_from.empty()) {
        l.proxy_protocol = true;
        l.proxy_trusted = proxy_from;
      }
    }
  }
  if (config.proxy.listeners.empty()) throw ConfigError("nothing to listen on: give --listen/--listen-tls or --config");
  for (const auto& l : config.proxy.listeners) {
    if (l.upstream.addresses.empty()) throw ConfigError("listener " + l.name + ": no upstream (give --upstream HOST:PORT)");
    if (l.implicit_tls && (l.cert_file.empty() || l.key_file.empty())) {
      throw ConfigError("listener " + l.name + ": implicit TLS needs --tls-cert and --tls-key");
    }
    if (l.cert_file.empty() != l.key_file.empty()) throw ConfigError("listener " + l.name + ": give both --tls-cert and --tls-key");
    if (l.compress == transport::ClientCompress::PassThrough && l.upstream.compress) {
      throw ConfigError("listener " + l.name + ": --compress-pass-through can't be combined with --upstream-compress");
    }
  }
  config.diagnostics.user_names = config.inspector.user_names;
  return config;
}

std::string usage() {
  return R"(usage: imapscope [--config FILE] [flags]        run the proxy
       imapscope --check-config FILE [flags]     validate settings, print them, exit
       imapscope decode FILE...                  replay C:/S: transcripts through the codec
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
  --tls-cert FILE            certificate chain (PEM) for the client side
  --tls-key FILE             its private key (PEM)
  --login-disabled-until-tls advertise LOGINDISABLED and refuse LOGIN/AUTHENTICATE before STARTTLS
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
  --proxy-protocol-from CIDR listeners require a PROXY protocol header (v1 or v2) and take
                             it only from this network (repeatable); others are refused
  --admin HOST:PORT          metrics (/metrics), admin API (/api/...) and the live
                             sessions page (/) (default 127.0.0.1:9143; "none": off)
  --admin-token-file FILE    bearer token the admin address requires (first line);
                             needed for an address other than loopback
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
  --diagnostics-state FILE   keep the last UIDVALIDITY per user and mailbox in FILE across restarts
  --no-diagnostics           don't look for client behaviours that cost servers (README, Diagnostics)
  --transcripts DIR          write a transcript of every session to DIR (JSON lines,
                             credentials redacted; selection and limits: config file)
  --log-level LEVEL          debug, info, warning, error
  -h, --help                 this text

Config file: JSON, see README.md ("Configuration").
)";
}

}  // namespace imapscope::app
