// A broken config is refused with the file, the key and the reason.
#include <gtest/gtest.h>

#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "proxy/app/config.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::app {
namespace {

std::string write_temp(const std::string& text) { return imapscope::testing::write_temp_file("imapscope-config-", text); }

std::string error_of(const std::string& text) {
  const auto path = write_temp(text);
  try {
    (void)load_config_file(path);
  } catch (const ConfigError& e) {
    std::remove(path.c_str());
    std::string message = e.what();
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;  // starts with the file
    return message.substr(path.size() + 2);
  }
  std::remove(path.c_str());
  return "no error";
}

const char* kListener = R"({"listen": "127.0.0.1:1143", "upstream": {"addresses": ["127.0.0.1:143"]}})";

TEST(Config, LoadsAFullFile) {
  const auto path = write_temp(R"({
    "log_level": "warning", "threads": 2, "admin": "127.0.0.1:9999",
    "timeouts": {"idle_ms": 60000, "login_ms": 5000, "server_response_ms": 90000},
    "limits": {"max_line_length": 8192},
    "listeners": [
      {"name": "imaps", "listen": "[::1]:993", "tls": "implicit", "cert": "c.pem", "key": "k.pem",
       "upstream": {"addresses": ["a.example:993", "b.example:993"], "tls": "implicit", "verify": false}}
    ]})");
  const auto config = load_config_file(path);
  std::remove(path.c_str());
  ASSERT_EQ(config.proxy.listeners.size(), 1u);
  const auto& l = config.proxy.listeners[0];
  EXPECT_EQ(l.listen.host, "::1");
  EXPECT_EQ(l.listen.port, 993);
  EXPECT_TRUE(l.implicit_tls);
  EXPECT_EQ(l.upstream.addresses.size(), 2u);
  EXPECT_EQ(l.upstream.tls, transport::UpstreamTls::Implicit);
  EXPECT_FALSE(l.upstream.verify);
  EXPECT_EQ(config.proxy.threads, 2u);
  EXPECT_EQ(config.proxy.timeouts.idle.count(), 60000);
  EXPECT_EQ(config.proxy.timeouts.login.count(), 5000);
  EXPECT_EQ(config.proxy.timeouts.server_response.count(), 90000);
  EXPECT_EQ(config.proxy.client_limits.max_line_length, 8192u);
  EXPECT_EQ(config.admin.port, 9999);
}

TEST(Config, ErrorsNameTheKeyAndTheReason) {
  EXPECT_EQ(error_of(std::string(R"({"listeners": [)") + kListener + R"(], "treads": 2})"), "/treads: unknown setting");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "upstream": {"addresses": ["x:1"], "tls": "ssl"}}]})"),
            "/listeners/0/upstream/tls: must be one of implicit, none, starttls (not \"ssl\")");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:99999", "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/listen: port \"99999\" is not a number from 0 to 65535");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "tls": "implicit", "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/tls: \"implicit\" needs cert and key");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "upstream": {"addresses": []}}]})"),
            "/listeners/0/upstream/addresses: needs at least one \"host:port\"");
  EXPECT_EQ(error_of(std::string(R"({"timeouts": {"idle_ms": -5}, "listeners": [)") + kListener + "]}"),
            "/timeouts/idle_ms: must be a whole number from 1 to 86400000");
}

TEST(Config, RunAsAnAccountOfThisSystem) {
  // "nobody" and "nogroup" are in every Debian's base files.
  const auto path = write_temp(std::string(R"({"user": "nobody", "group": "nogroup", "listeners": [)") + kListener + "]}");
  const auto config = load_config_file(path);
  std::remove(path.c_str());
  ASSERT_TRUE(config.run_as);
  EXPECT_EQ(config.run_as->user, "nobody");
  EXPECT_EQ(config.run_as->uid, 65534u);
  EXPECT_EQ(config.run_as->group, "nogroup");
  EXPECT_FALSE(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1"})).run_as);
  EXPECT_EQ(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--user", "nobody"})).run_as->group,
            "nogroup");  // the user's own group
  EXPECT_EQ(error_of(std::string(R"({"user": "no-such-user-21", "listeners": [)") + kListener + "]}"),
            "/user: no user \"no-such-user-21\" on this system");
  EXPECT_EQ(error_of(std::string(R"({"user": "nobody", "group": "no-such-group-21", "listeners": [)") + kListener + "]}"),
            "/group: no group \"no-such-group-21\" on this system");
  EXPECT_EQ(error_of(std::string(R"({"group": "nogroup", "listeners": [)") + kListener + "]}"), "/group: needs \"user\" too");
  EXPECT_EQ(error_of(std::string(R"({"user": "root", "listeners": [)") + kListener + "]}"),
            "/user: user \"root\" is root: name an unprivileged user");
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--user", "no-such-user-21"})),
               ConfigError);
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--group", "nogroup"})),
               ConfigError);
}

TEST(Config, SyntaxErrorsGiveThePosition) {
  const auto message = error_of("{\n  \"listeners\": [,]\n}");
  EXPECT_EQ(message.rfind("line 2, column 17: syntax error", 0), 0u) << message;
}

TEST(Flags, SimpleCaseNeedsNoFile) {
  const auto config = build_config(parse_flags({"--listen-tls", "0.0.0.0:993", "--tls-cert", "c", "--tls-key", "k",
                                                "--upstream", "mail.example.org:993", "--upstream-tls"}));
  ASSERT_EQ(config.proxy.listeners.size(), 1u);
  EXPECT_TRUE(config.proxy.listeners[0].implicit_tls);
  EXPECT_EQ(config.proxy.listeners[0].upstream.addresses[0].host, "mail.example.org");
  EXPECT_EQ(config.proxy.listeners[0].upstream.tls, transport::UpstreamTls::Implicit);
  EXPECT_TRUE(config.proxy.listeners[0].upstream.verify);
}

TEST(Config, RulesFromTheFileOrTheFlag) {
  const auto rules = write_temp(R"js({"rules": [{"name": "r", "description": "d",
    "match": {"direction": "server", "client": ["thunderbird"]}, "actions": {"delay_ms": 5}}]})js");
  const auto file = write_temp(std::string(R"js({"rules": ")js") + rules + R"js(", "listeners": [)js" + kListener + "]}");
  const auto config = build_config(parse_flags({"--config", file}));
  ASSERT_TRUE(config.proxy.rules);
  EXPECT_EQ(config.proxy.rules->current()->rules.size(), 1u);
  EXPECT_EQ(config.proxy.rules->path(), rules);
  // A bad rule file stops start-up with the file, the JSON pointer and the reason.
  const auto bad = write_temp(R"js({"rules": [{"name": "r", "description": "d",
    "match": {"direction": "server", "client": ["thunderbrid"]}, "actions": {"delay_ms": 5}}]})js");
  try {
    (void)build_config(parse_flags({"--config", file, "--rules", bad}));
    FAIL() << "loaded";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad + ": /rules/0/match/client/0: \"thunderbrid\" is not a client family of the signatures");
  }
  for (const auto& path : {rules, file, bad}) std::remove(path.c_str());
}

TEST(Flags, MistakesAreRefused) {
  EXPECT_THROW(parse_flags({"--listen"}), ConfigError);
  EXPECT_THROW(parse_flags({"--bogus"}), ConfigError);
  EXPECT_THROW(parse_flags({"--upstream-tls", "--upstream-starttls"}), ConfigError);
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:143"})), ConfigError);  // no upstream
  EXPECT_THROW(build_config(parse_flags({"--listen-tls", "127.0.0.1:993", "--upstream", "x:1"})), ConfigError);
}

TEST(Config, ProxyProtocolAndClientForwarding) {
  const auto path = write_temp(R"({"listeners": [
    {"listen": "127.0.0.1:1143", "proxy_protocol": {"trusted": ["10.0.0.0/8", "::1"]},
     "upstream": {"addresses": ["127.0.0.1:143"], "forward_client": "id"}}]})");
  const auto config = load_config_file(path);
  std::remove(path.c_str());
  const auto& l = config.proxy.listeners.at(0);
  EXPECT_TRUE(l.proxy_protocol);
  ASSERT_EQ(l.proxy_trusted.size(), 2u);
  EXPECT_TRUE(l.proxy_trusted[0].contains("10.1.2.3"));
  EXPECT_TRUE(l.proxy_trusted[0].contains("::ffff:10.1.2.3"));  // what a dual-stack socket reports
  EXPECT_FALSE(l.proxy_trusted[0].contains("11.1.2.3"));
  EXPECT_EQ(l.upstream.forward_client, transport::ClientForwarding::ImapId);

  // A listener that takes headers from anyone would let anyone claim any address.
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "proxy_protocol": {},
                          "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/proxy_protocol/trusted: needs the balancers' addresses or CIDR blocks");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "proxy_protocol": {"trusted": ["lb.example"]},
                          "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/proxy_protocol/trusted/0: \"lb.example\" is not an address or CIDR block");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "upstream": {"addresses": ["x:1"], "forward_client": "xclient"}}]})"),
            "/listeners/0/upstream/forward_client: must be one of id, none, proxy-v1, proxy-v2 (not \"xclient\")");

  const auto flags = build_config(parse_flags({"--listen", "127.0.0.1:1143", "--upstream", "127.0.0.1:143",
                                               "--proxy-protocol-from", "127.0.0.0/8", "--upstream-forward-client",
                                               "proxy-v2"}));
  EXPECT_TRUE(flags.proxy.listeners.at(0).proxy_protocol);
  EXPECT_EQ(flags.proxy.listeners.at(0).upstream.forward_client, transport::ClientForwarding::ProxyV2);
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--proxy-protocol-from", "x"})),
               ConfigError);
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--upstream-forward-client",
                                         "v2"})),
               ConfigError);
}

TEST(Config, CompressModes) {
  auto mode_of = [](const std::string& value) {
    const auto path = write_temp(R"({"listeners": [{"listen": "127.0.0.1:1143", "compress": )" + value +
                                 R"(, "upstream": {"addresses": ["127.0.0.1:143"]}}]})");
    const auto config = load_config_file(path);
    std::remove(path.c_str());
    return config.proxy.listeners.at(0).compress;
  };
  EXPECT_EQ(mode_of("false"), transport::ClientCompress::Off);
  EXPECT_EQ(mode_of("\"off\""), transport::ClientCompress::Off);
  EXPECT_EQ(mode_of("true"), transport::ClientCompress::Proxy);
  EXPECT_EQ(mode_of("\"proxy\""), transport::ClientCompress::Proxy);
  EXPECT_EQ(mode_of("\"pass-through\""), transport::ClientCompress::PassThrough);
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "compress": "zstd", "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/compress: must be one of off, pass-through, proxy (not \"zstd\")");
  // The proxy's own COMPRESS towards the server would leave nothing to pass through.
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "compress": "pass-through",
                          "upstream": {"addresses": ["x:1"], "compress": true}}]})"),
            "/listeners/0/compress: \"pass-through\" can't be combined with the upstream's own \"compress\": true");
  const auto flags =
      build_config(parse_flags({"--listen", "127.0.0.1:1143", "--upstream", "x:1", "--compress-pass-through"}));
  EXPECT_EQ(flags.proxy.listeners.at(0).compress, transport::ClientCompress::PassThrough);
  EXPECT_THROW(build_config(parse_flags({"--listen", "127.0.0.1:1", "--upstream", "x:1", "--compress-pass-through",
                                         "--upstream-compress"})),
               ConfigError);
}

TEST(Config, PlaintextLoginModes) {
  auto mode_of = [](const std::string& setting) {
    const auto path = write_temp(R"({"listeners": [{"listen": "127.0.0.1:1143", "tls": "starttls", "cert": "c",
                                   "key": "k", )" + setting + R"("upstream": {"addresses": ["127.0.0.1:143"]}}]})");
    const auto config = load_config_file(path);
    std::remove(path.c_str());
    return config.proxy.listeners.at(0).plaintext_login;
  };
  using transport::PlaintextLogin;
  EXPECT_EQ(mode_of(""), PlaintextLogin::Refuse);  // the default
  EXPECT_EQ(mode_of(R"("plaintext_login": "refuse", )"), PlaintextLogin::Refuse);
  EXPECT_EQ(mode_of(R"("plaintext_login": "loopback", )"), PlaintextLogin::Loopback);
  EXPECT_EQ(mode_of(R"("plaintext_login": "allow", )"), PlaintextLogin::Allow);
  // The older key still means what it says.
  EXPECT_EQ(mode_of(R"("login_disabled_until_tls": true, )"), PlaintextLogin::Refuse);
  EXPECT_EQ(mode_of(R"("login_disabled_until_tls": false, )"), PlaintextLogin::Allow);
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "plaintext_login": "yes", "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/plaintext_login: must be one of allow, loopback, refuse (not \"yes\")");
  EXPECT_EQ(error_of(R"({"listeners": [{"listen": "127.0.0.1:1", "plaintext_login": "allow",
                          "login_disabled_until_tls": false, "upstream": {"addresses": ["x:1"]}}]})"),
            "/listeners/0/login_disabled_until_tls: is replaced by \"plaintext_login\": give only that");
  // Flags: over every listener of the file, or for the listeners they make.
  auto flag_mode = [](std::vector<std::string> flags) {
    std::vector<std::string> args = {"--listen", "127.0.0.1:1143", "--tls-cert", "c", "--tls-key", "k", "--upstream", "x:1"};
    args.insert(args.end(), flags.begin(), flags.end());
    return build_config(parse_flags(args)).proxy.listeners.at(0).plaintext_login;
  };
  EXPECT_EQ(flag_mode({}), PlaintextLogin::Refuse);
  EXPECT_EQ(flag_mode({"--plaintext-login", "loopback"}), PlaintextLogin::Loopback);
  EXPECT_EQ(flag_mode({"--plaintext-login", "allow"}), PlaintextLogin::Allow);
  EXPECT_EQ(flag_mode({"--login-disabled-until-tls"}), PlaintextLogin::Refuse);
  EXPECT_THROW(parse_flags({"--plaintext-login", "sometimes"}), ConfigError);
  const auto file = write_temp(R"({"listeners": [{"listen": "127.0.0.1:1143", "tls": "starttls", "cert": "c",
                                 "key": "k", "plaintext_login": "allow", "upstream": {"addresses": ["x:1"]}}]})");
  EXPECT_EQ(build_config(parse_flags({"--config", file})).proxy.listeners.at(0).plaintext_login, PlaintextLogin::Allow);
  EXPECT_EQ(build_config(parse_flags({"--config", file, "--plaintext-login", "refuse"})).proxy.listeners.at(0).plaintext_login,
            PlaintextLogin::Refuse);
  std::remove(file.c_str());
}

TEST(Config, AdminTokenLiveViewAndUserNames) {
  const auto token = write_temp("0123456789abcdef-token\n");
  const auto file = write_temp(std::string(R"js({"admin": "0.0.0.0:9143", "admin_token_file": ")js") + token +
                               R"js(", "user_names": "redacted", "live": {"events": 10, "event_kb": 4, "recent_closed": 0},
    "transcripts": {"dir": "/tmp/t", "select": {"sample": 0}}, "listeners": [)js" + kListener + "]}");
  const auto config = build_config(parse_flags({"--config", file}));
  EXPECT_EQ(config.admin_token, "0123456789abcdef-token");  // without the line end
  EXPECT_EQ(config.inspector.user_names, inspect::UserNames::Redacted);
  EXPECT_EQ(config.inspector.live_limits.events, 10u);
  EXPECT_EQ(config.inspector.live_limits.event_bytes, 4096u);
  EXPECT_EQ(config.inspector.live_limits.recent_closed, 0u);
  ASSERT_TRUE(config.inspector.transcripts);
  EXPECT_EQ(config.inspector.selection.sample, 0.0);
  // Without a token file the token is made in the state folder at start: any address
  // is allowed. A short token, or one every local user can read, is refused.
  const auto listen = std::string("127.0.0.1:1143");
  EXPECT_NO_THROW(build_config(parse_flags({"--listen", listen, "--upstream", "x:1", "--admin", "192.0.2.1:9143"})));
  EXPECT_NO_THROW(build_config(parse_flags({"--listen", listen, "--upstream", "x:1", "--admin", "[::1]:9143"})));
  const auto short_token = write_temp("short\n");
  EXPECT_THROW(build_config(parse_flags({"--listen", listen, "--upstream", "x:1", "--admin-token-file", short_token})),
               ConfigError);
  const auto readable = write_temp("0123456789abcdef-token\n");
  chmod(readable.c_str(), 0644);
  try {
    (void)build_config(parse_flags({"--listen", listen, "--upstream", "x:1", "--admin-token-file", readable}));
    ADD_FAILURE() << "a world-readable token file was taken";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("flag --admin-token-file: " + readable + ": can be read by every local user"),
              std::string::npos)
        << e.what();
  }
  std::remove(readable.c_str());
  for (const auto& path : {token, file, short_token}) std::remove(path.c_str());
}

TEST(Config, AdminHostsLimitsAndMetricsAddress) {
  const auto file = write_temp(std::string(R"js({"admin_hosts": ["imapscope.example.org", "admin.internal:8443"],
    "admin_limits": {"connections": 8, "streams": 2, "stream_max_s": 60, "head_timeout_ms": 1000,
                     "write_timeout_ms": 2000},
    "metrics": "127.0.0.1:9145", "listeners": [)js") + kListener + "]}");
  const auto config = build_config(parse_flags({"--config", file}));
  EXPECT_EQ(config.admin_hosts, (std::vector<std::string>{"imapscope.example.org", "admin.internal:8443"}));
  EXPECT_EQ(config.admin_limits.connections, 8u);
  EXPECT_EQ(config.admin_limits.streams, 2u);
  EXPECT_EQ(config.admin_limits.stream_max_s, 60u);
  EXPECT_EQ(config.admin_limits.head_timeout_ms, 1000u);
  EXPECT_EQ(config.admin_limits.write_timeout_ms, 2000u);
  ASSERT_TRUE(config.metrics);
  EXPECT_EQ(config.metrics->host, "127.0.0.1");
  EXPECT_EQ(config.metrics->port, 9145);
  const auto flagged = build_config(parse_flags({"--config", file, "--metrics", "127.0.0.1:9146"}));
  EXPECT_EQ(flagged.metrics->port, 9146);
  std::remove(file.c_str());
  EXPECT_EQ(error_of(std::string(R"({"admin_limits": {"sockets": 3}, "listeners": [)") + kListener + "]}"),
            "/admin_limits/sockets: unknown setting");
  EXPECT_EQ(error_of(std::string(R"({"metrics": "9145", "listeners": [)") + kListener + "]}"),
            "/metrics: \"9145\" is not host:port");
}

}  // namespace
}  // namespace imapscope::app

namespace imapscope::app {
namespace {

TEST(Config, LimitsBeforeLoginAndThePenalty) {
  const auto path = write_temp(std::string(R"({"limits": {"max_sessions": 500, "max_prelogin_sessions": 100,
      "max_prelogin_per_address": 10, "max_literal_before_login": 2048, "refusal_log_interval_s": 30},
    "login_penalty": {"initial_ms": 1000, "max_ms": 8000, "expire_s": 600, "max_addresses": 1000},
    "listeners": [)") + kListener + "]}");
  const auto config = load_config_file(path);
  std::remove(path.c_str());
  const auto& g = config.proxy.guard;
  EXPECT_EQ(g.limits.max_sessions, 500u);
  EXPECT_EQ(g.limits.max_prelogin, 100u);
  EXPECT_EQ(g.limits.max_prelogin_per_address, 10u);
  EXPECT_EQ(g.log_interval.count(), 30);
  EXPECT_EQ(config.proxy.client_limits.max_literal_before_login, 2048u);
  EXPECT_TRUE(g.penalty.enabled);
  EXPECT_EQ(g.penalty.initial.count(), 1000);
  EXPECT_EQ(g.penalty.max.count(), 8000);
  EXPECT_EQ(g.penalty.expire.count(), 600);
  EXPECT_EQ(g.penalty.max_addresses, 1000u);
  // Unset: derived at start (0), 128 per address, the penalty on.
  const auto defaults = build_config(parse_flags({"--listen", "127.0.0.1:1143", "--upstream", "127.0.0.1:143"}));
  EXPECT_EQ(defaults.proxy.guard.limits.max_sessions, 0u);
  EXPECT_EQ(defaults.proxy.guard.limits.max_prelogin, 0u);
  EXPECT_EQ(defaults.proxy.guard.limits.max_prelogin_per_address, 128u);
  EXPECT_EQ(defaults.proxy.client_limits.max_literal_before_login, 64u * 1024);
  const auto flags = build_config(parse_flags({"--listen", "127.0.0.1:1143", "--upstream", "127.0.0.1:143",
                                               "--max-sessions", "7", "--max-prelogin", "3",
                                               "--max-prelogin-per-address", "2", "--no-login-penalty"}));
  EXPECT_EQ(flags.proxy.guard.limits.max_sessions, 7u);
  EXPECT_EQ(flags.proxy.guard.limits.max_prelogin, 3u);
  EXPECT_EQ(flags.proxy.guard.limits.max_prelogin_per_address, 2u);
  EXPECT_FALSE(flags.proxy.guard.penalty.enabled);
}

TEST(Config, BadLimitsAreRefusedWithTheirPointer) {
  EXPECT_EQ(error_of(R"({"login_penalty": {"initial_ms": 5000, "max_ms": 1000}})"),
            "/login_penalty/max_ms: must not be less than initial_ms");
  EXPECT_NE(error_of(R"({"limits": {"max_prelogin_per_address": 0}})").find("/limits/max_prelogin_per_address"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"login_penalty": {"penalty": 1}})").find("/login_penalty/penalty"), std::string::npos);
  EXPECT_THROW(parse_flags({"--max-sessions", "many"}), ConfigError);
}

TEST(Config, DiagnosticsThresholdsAreSettingsWithQuietDefaults) {
  const auto path = write_temp(std::string(R"({"listeners": [)") + kListener + "]}");
  const auto defaults = load_config_file(path).diagnostics.thresholds;
  std::remove(path.c_str());
  // The full-resync repeat needs a mailbox of thousands and megabytes fetched again.
  EXPECT_EQ(defaults.resync_min_messages, 20'000u);
  EXPECT_EQ(defaults.resync_repeat_min_messages, 1'000u);
  EXPECT_EQ(defaults.resync_repeat_min_bytes, 1u << 20);
  EXPECT_EQ(defaults.folder_connections, 6u);
  EXPECT_EQ(defaults.keepalive_wakeups, 5u);
  const auto set = write_temp(std::string(R"({"diagnostics": {"resync_repeat_min_messages": 5,
    "resync_repeat_min_bytes": 1000, "resync_repeat_window_s": 60, "poll_count": 4, "poll_interval_s": 30},
    "listeners": [)") + kListener + "]}");
  const auto t = load_config_file(set).diagnostics.thresholds;
  std::remove(set.c_str());
  EXPECT_EQ(t.resync_repeat_min_messages, 5u);
  EXPECT_EQ(t.resync_repeat_min_bytes, 1000u);
  EXPECT_EQ(t.resync_repeat_window, std::chrono::seconds(60));
  EXPECT_EQ(t.poll_count, 4u);
  EXPECT_EQ(t.poll_interval, std::chrono::seconds(30));
  auto error = [](const std::string& diagnostics) {
    return error_of(R"({"diagnostics": )" + diagnostics + R"(, "listeners": [)" + kListener + "]}");
  };
  EXPECT_EQ(error(R"({"resync_repeat_min_bytes": 0})"),
            "/diagnostics/resync_repeat_min_bytes: must be a whole number from 1 to 1099511627776");
  EXPECT_EQ(error(R"({"resync_repeat_min_messages": "many"})").rfind("/diagnostics/resync_repeat_min_messages: ", 0), 0u);
  EXPECT_EQ(error(R"({"user_connection_warn": 12})"), "/diagnostics/user_connection_warn: is above user_connection_limit (10)");
  EXPECT_EQ(error(R"({"resync_min_bytes": 1})"), "/diagnostics/resync_min_bytes: unknown setting");
}

}  // namespace
}  // namespace imapscope::app
