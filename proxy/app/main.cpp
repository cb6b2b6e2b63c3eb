// imapscope entry point: parse flags and config (exceptions allowed here only),
// then run the proxy; or validate a config; or replay transcripts through the codec.
#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "proxy/app/config.hpp"
#include "proxy/app/metric_series.hpp"
#include "proxy/app/privileges.hpp"
#include "proxy/app/inspect_command.hpp"
#include "proxy/app/replay_command.hpp"
#include "proxy/app/tls_metrics.hpp"
#include "proxy/app/admin_api.hpp"
#include "proxy/app/admin_servers.hpp"
#include "proxy/diagnose/diagnostics.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/observe/fanout.hpp"
#include "proxy/observe/metrics.hpp"
#include "proxy/observe/route_metrics.hpp"
#include "proxy/replay/conversation.hpp"
#include "proxy/transport/listener_setup.hpp"
#include "proxy/transport/proxy.hpp"
#include "proxy/transport/router.hpp"
#include "proxy/util/log.hpp"
#include "proxy/util/private_files.hpp"

namespace {

constexpr const char* kDecodeUsage = R"(usage: imapscope decode FILE...

Replays C:/S: transcripts (tests/data/transcripts) through the codec and prints what it
decoded, message by message.
  -h, --help   this text
)";

// Why imapscope stops at start: a line a person reads, or, once JSON logs were
// chosen, a JSON line like every other (a log shipper takes it as it comes).
void report_failure(const char* what) {
  if (imapscope::util::log_format() == imapscope::util::LogFormat::Json) {
    imapscope::util::log_line(imapscope::util::LogLevel::Error,
                              "event=start_failed error=" + imapscope::util::log_quote(what, 2000));
  } else {
    std::fprintf(stderr, "imapscope: %s\n", what);
  }
}

int decode(const std::vector<std::string>& files) {
  for (const auto& file : files) {
    for (const auto& script : imapscope::replay::load_scripts(file)) {
      std::printf("=== %s\n", script.name.c_str());
      const auto result = imapscope::replay::run_script(script);
      for (const auto& line : result.log) std::printf("%s\n", line.c_str());
    }
  }
  return 0;
}

void print_summary(const imapscope::app::Config& config) {
  for (const auto& l : config.proxy.listeners) {
    std::printf("listener %s: %s tls=%s certificates=%zu min_version=%s ", l.name.c_str(),
                l.listen.to_string().c_str(), l.implicit_tls ? "implicit" : l.certificates.empty() ? "none" : "starttls",
                l.certificates.size(), l.tls_policy.min_version == imapscope::transport::TlsVersion::Tls13 ? "TLSv1.3" : "TLSv1.2");
    using imapscope::transport::PlaintextLogin;
    if (!l.implicit_tls && !l.certificates.empty()) {
      std::printf("plaintext_login=%s ", l.plaintext_login == PlaintextLogin::Allow      ? "allow"
                                         : l.plaintext_login == PlaintextLogin::Loopback ? "loopback"
                                                                                          : "refuse");
    }
    std::printf("-> ");
    for (const auto& a : l.upstream.addresses) std::printf("%s ", a.to_string().c_str());
    using imapscope::transport::ClientForwarding;
    const auto forward = l.upstream.forward_client;
    using imapscope::transport::ClientCompress;
    std::printf("tls=%s verify=%s forward_client=%s proxy_protocol=%s compress=%s upstream_compress=%s\n",
                l.upstream.tls == imapscope::transport::UpstreamTls::Implicit   ? "implicit"
                : l.upstream.tls == imapscope::transport::UpstreamTls::Starttls ? "starttls"
                                                                                : "none",
                l.upstream.verify ? "yes" : "NO",
                forward == ClientForwarding::ProxyV1   ? "proxy-v1"
                : forward == ClientForwarding::ProxyV2 ? "proxy-v2"
                : forward == ClientForwarding::ImapId  ? "id"
                                                       : "none",
                l.proxy_protocol ? "required" : "off",
                l.compress == ClientCompress::Proxy         ? "proxy"
                : l.compress == ClientCompress::PassThrough ? "pass-through"
                                                            : "off",
                l.upstream.compress ? "yes" : "no");
  }
  const auto& signatures =
      config.proxy.signatures ? *config.proxy.signatures : imapscope::identify::builtin_signatures();
  std::printf("client signatures: %s, %zu families, %zu ID and %zu heuristic signatures\n",
              config.proxy.signatures ? "from --clients/config" : "built in", signatures.families.size(),
              signatures.id.size(), signatures.heuristics.size());
  if (config.run_as) {
    std::printf("runs as: user %s (%u), group %s (%u), once bound\n", config.run_as->user.c_str(),
                static_cast<unsigned>(config.run_as->uid), config.run_as->group.c_str(),
                static_cast<unsigned>(config.run_as->gid));
  }
  std::printf("diagnostics: %s, state file %s\n", config.diagnostics.enabled ? "on" : "off",
              config.diagnostics.state_file.empty() ? "none (in memory)" : config.diagnostics.state_file.c_str());
  if (const auto& store = config.proxy.rules) {
    const auto set = store->current();
    std::printf("rules: %zu from %zu files in %s\n", set->rules.size(), set->files.size(), store->path().c_str());
    for (const auto& rule : set->rules) std::printf("  %s (%s)\n", rule.name.c_str(), rule.file.c_str());
  } else {
    std::printf("rules: none\n");
  }
}

}  // namespace

// The relay allocates its buffers (queues up to 256 KiB, inflate steps of 64 KiB) per
// burst and frees them when a session goes quiet. With glibc's defaults each free
// at the top of the heap went back to the kernel (brk) and the next burst faulted
// the pages in again: half the CPU of a compressed relay (tests/bench/README.md,
// "COMPRESS through the relay"). Up to 4 MiB of free heap is kept instead, and
// buffers up to 1 MiB come from the heap rather than a mapping of their own.
void tune_malloc() {
  mallopt(M_TRIM_THRESHOLD, 4 << 20);
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

// A bind refused for want of privilege says what would allow it.
static std::string bind_hint(const imapscope::transport::ProxySettings& settings) {
  if (imapscope::app::can_bind_low_ports()) return "";
  for (const auto& l : settings.listeners) {
    if (l.listen.port != 0 && l.listen.port < 1024) {
      return " (ports below 1024 need root or CAP_NET_BIND_SERVICE, see docs/security.md)";
    }
  }
  return "";
}

int main(int argc, char** argv) {
  tune_malloc();
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    // Before anything reads a password or a key.
    imapscope::app::forbid_core_dumps();
    if (!args.empty() && args[0] == "inspect") return imapscope::app::inspect_command({args.begin() + 1, args.end()});
    if (!args.empty() && args[0] == "replay") return imapscope::app::replay_command({args.begin() + 1, args.end()});
    if (!args.empty() && args[0] == "decode") {
      if (imapscope::app::wants_help({args.begin() + 1, args.end()})) {
        std::fputs(kDecodeUsage, stdout);
        return 0;
      }
      if (args.size() < 2) throw imapscope::app::ConfigError("decode needs transcript files");
      return decode({args.begin() + 1, args.end()});
    }
    if (imapscope::app::wants_help(args)) {
      std::fputs(imapscope::app::usage().c_str(), stdout);
      return 0;
    }
    bool check_only = false;
    if (!args.empty() && args[0] == "--check-config") {
      if (args.size() < 2) throw imapscope::app::ConfigError("--check-config needs a file");
      args[0] = "--config";
      check_only = true;
    }
    const auto config = imapscope::app::build_config(imapscope::app::parse_flags(args));
    imapscope::util::set_log_level(config.log_level);
    imapscope::util::set_log_format(config.log_format);
    if (check_only) {
      // What start-up loads before binding (certificates, keys, CA files, addresses),
      // by the same code: what passes here starts, ports in use aside.
      for (const auto& listener : config.proxy.listeners) (void)imapscope::transport::prepare_listener(listener);
      if (!config.proxy.routing.map_file.empty()) {
        (void)imapscope::transport::load_route_map(config.proxy.routing.map_file, config.proxy.routing.backend_tls);
      }
      print_summary(config);
      std::printf("config OK\n");
      return 0;
    }
    // Every folder is checked, and every file made, for the account the proxy will
    // run as: it must own them, and be able to rotate and rewrite them later.
    if (config.run_as) {
      imapscope::app::check_can_become(*config.run_as);
      imapscope::util::set_private_owner(config.run_as->uid, config.run_as->gid);
    }
    std::string label_key;
    try {
      imapscope::util::ensure_private_dir(config.state_dir);
      label_key = imapscope::util::load_or_create_secret(config.state_dir + "/label-key", 32);
    } catch (const std::exception& e) {
      throw imapscope::app::ConfigError("state folder: " + std::string(e.what()));
    }
    auto settings = config.proxy;
    std::vector<std::shared_ptr<imapscope::session::Telemetry>> watchers;
    std::shared_ptr<imapscope::observe::Metrics> metrics;
    std::shared_ptr<imapscope::inspect::Inspector> inspector;
    auto inspector_options = config.inspector;
    inspector_options.label_key = label_key;
    inspector_options.live = inspector_options.live && config.admin_enabled;  // nobody could look
    if (config.admin_enabled || config.metrics) {
      const auto& signatures = settings.signatures ? *settings.signatures : imapscope::identify::builtin_signatures();
      metrics = std::make_shared<imapscope::observe::Metrics>(signatures.families, settings.rules);
      imapscope::app::add_known_series(*metrics, settings);
      watchers.push_back(metrics);
    }
    if (inspector_options.transcripts || inspector_options.live) {
      try {
        inspector = std::make_shared<imapscope::inspect::Inspector>(inspector_options);
      } catch (const std::exception& e) {
        throw imapscope::app::ConfigError("transcripts: " + std::string(e.what()));
      }
      if (inspector_options.transcripts) {
        imapscope::util::log_line(imapscope::util::LogLevel::Info,
                                  "event=transcripts dir=" + imapscope::util::log_quote(inspector_options.transcripts->dir));
      }
      if (metrics) imapscope::app::add_inspector_metrics(*metrics, inspector);
      watchers.push_back(inspector);
    }
    if (watchers.size() == 1) {
      settings.telemetry = watchers.front();
    } else if (!watchers.empty()) {
      settings.telemetry = std::make_shared<imapscope::observe::FanoutTelemetry>(std::move(watchers));
    }
    // Routing mode: the backend pool is made here, so that the admin API can show and
    // drain it before the proxy runs; its metrics must be in place before the first scrape.
    imapscope::app::AdminRouting admin_routing;
    if (settings.routing.enabled()) {
      const auto& health = settings.routing.health;
      settings.backends = std::make_shared<imapscope::route::Backends>(64, health.fall, health.rise);
      if (metrics) {
        auto route_metrics = std::make_shared<imapscope::observe::RouteMetrics>(settings.backends);
        metrics->add_collector(route_metrics);
        settings.route_telemetry = route_metrics;
      }
      admin_routing.backends = settings.backends;
    }
    // The diagnostics wrap the others: their findings go to the same observers.
    std::shared_ptr<imapscope::diagnose::Diagnostics> diagnostics;
    if (config.diagnostics.enabled) {
      auto diagnostics_options = config.diagnostics;
      diagnostics_options.label_key = label_key;
      diagnostics = std::make_shared<imapscope::diagnose::Diagnostics>(diagnostics_options, settings.telemetry);
      settings.telemetry = diagnostics;
    }
    // The admin address is up before the listeners (whoever sees the IMAP port open
    // can use it too); it says "ready" only while a running proxy takes sessions.
    std::atomic<const imapscope::transport::Proxy*> running{nullptr};
    if (metrics) {
      imapscope::app::add_tls_metrics(*metrics, [&running] {
        const auto* proxy = running.load();
        return proxy ? proxy->tls_status() : std::vector<imapscope::transport::ListenerTlsStatus>{};
      });
    }
    if (admin_routing.backends) {
      admin_routing.kick = [&running](const imapscope::route::KickRequest& request) -> std::size_t {
        const auto* proxy = running.load();
        return proxy ? proxy->kick(request) : 0;
      };
    }
    auto admin = imapscope::app::start_admin_servers(
        config, metrics, inspector, diagnostics,
        [&running] {
          const auto* proxy = running.load();
          return proxy != nullptr && !proxy->draining();
        },
        admin_routing);
    std::unique_ptr<imapscope::transport::Proxy> bound;
    try {
      bound = std::make_unique<imapscope::transport::Proxy>(settings);  // binds, loads the keys
    } catch (const std::exception& e) {
      const auto hint = bind_hint(settings);
      if (hint.empty()) throw;
      throw std::runtime_error(e.what() + hint);
    }
    auto& proxy = *bound;
    // Everything that needs root is done: from here on, the account's rights only.
    if (config.run_as) {
      imapscope::app::become(*config.run_as);
      imapscope::util::log_line(imapscope::util::LogLevel::Info,
                                "event=privileges_dropped user=" + imapscope::util::log_quote(config.run_as->user) +
                                    " group=" + imapscope::util::log_quote(config.run_as->group));
      // What it writes later (the next transcript, the state file) it writes as the user.
      try {
        if (inspector_options.transcripts) imapscope::util::check_usable_dir(inspector_options.transcripts->dir);
        if (!config.diagnostics.state_file.empty()) {
          const auto folder = std::filesystem::path(config.diagnostics.state_file).parent_path().string();
          imapscope::util::check_usable_dir(folder.empty() ? "." : folder);
        }
      } catch (const std::exception& e) {
        throw imapscope::app::ConfigError("as user " + config.run_as->user + ": " + e.what());
      }
    } else {
      imapscope::app::drop_capabilities();
    }
    running = &proxy;
    const int status = proxy.run();
    running = nullptr;
    admin = {};  // before the proxy goes: its thread may still ask for readiness
    return status;
  } catch (const imapscope::app::ConfigError& e) {
    report_failure(e.what());
    return 2;
  } catch (const std::exception& e) {
    report_failure(e.what());
    return 1;
  }
}
