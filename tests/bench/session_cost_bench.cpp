// What rules and metrics cost per message: the mail client session of
// conversation.hpp played through session::Session (both decoders, capability
// rewriting, identification) with no rules, and with the default set plus the bench
// rules (rules/quirks and tests/bench/rules.json, 21 rules; the bench rules apply to
// every client, so every message is matched against them and their regexes run);
// and with the metrics observer. No sockets: the figure is the session's own CPU per
// byte and per message.
//
//   BM_rules/0   no rules, no metrics
//   BM_rules/1   21 rules: rules/quirks + tests/bench/rules.json
//   BM_rules/2   rules/quirks alone (9 enabled rules, each for particular clients:
//                none applies to this session's client, the usual case)
//   BM_metrics   no rules, the Prometheus metrics observer (observe::SessionMetrics)
//   BM_inspector/0  the live view alone (the default: every event redacted, formatted
//                   and kept in the session's ring)
//   BM_inspector/1  live view + a transcript of every session (the writer thread
//                   writes to a temporary folder)
//   BM_inspector/2  as 1, with message bodies captured (body_cap_kb 64)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "proxy/identify/signatures.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/observe/metrics.hpp"
#include "proxy/policy/rule_set.hpp"
#include "proxy/session/session.hpp"
#include "tests/bench/conversation.hpp"

namespace imapscope::bench {
namespace {

constexpr std::size_t kRead = 16 * 1024;
constexpr int kRounds = 400;

// rules/quirks + tests/bench/rules.json copied into one folder.
std::unique_ptr<policy::RuleStore> bench_rules(bool with_bench_rules) {
  namespace fs = std::filesystem;
  const fs::path root = IMAPSCOPE_SOURCE_DIR;
  const fs::path dir = fs::temp_directory_path() / (with_bench_rules ? "imapscope-rules-bench" : "imapscope-rules-quirks");
  fs::create_directories(dir);
  for (const auto& entry : fs::directory_iterator(root / "rules" / "quirks")) {
    fs::copy_file(entry.path(), dir / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
  if (with_bench_rules) {
    fs::copy_file(root / "tests" / "bench" / "rules.json", dir / "bench.json", fs::copy_options::overwrite_existing);
  }
  auto store = std::make_unique<policy::RuleStore>(dir.string(), identify::builtin_signatures().families);
  store->load_or_throw();
  return store;
}

// Plays the conversation like the relay: client reads until the session blocks,
// then the server bytes the consumed commands have caused. Returns bytes forwarded.
std::size_t play(const Conversation& c, session::Session& s) {
  const std::string_view client = c.client, server = c.server;
  std::string_view client_read, server_read;
  std::size_t client_pos = 0, server_pos = 0, server_limit = 0, gate = 0, forwarded = 0;
  while (client_pos < client.size() || !client_read.empty() || server_pos < server.size()) {
    bool progress = false;
    for (;;) {
      if (client_read.empty()) {
        if (client_pos == client.size()) break;
        client_read = client.substr(client_pos, kRead);
        client_pos += client_read.size();
      }
      const auto before = client_read.size();
      s.feed_client(client_read);
      if (client_read.size() == before) break;
      progress = true;
    }
    forwarded += s.to_server().size();
    s.to_server().clear();
    const std::size_t consumed = client_pos - client_read.size();
    while (gate < c.gates.size() && c.gates[gate].client_end <= consumed) server_limit = c.gates[gate++].server_end;
    for (;;) {
      if (server_read.empty()) {
        if (server_pos == server_limit) break;
        server_read = server.substr(server_pos, std::min(kRead, server_limit - server_pos));
        server_pos += server_read.size();
      }
      const auto before = server_read.size();
      s.feed_server(server_read);
      if (server_read.size() == before) break;
      progress = true;
    }
    forwarded += s.to_client().size();
    s.to_client().clear();
    if (!progress) throw std::runtime_error("the session got stuck");
  }
  return forwarded;
}

// Bytes per second and ns per message; an error when the session changed the
// traffic (no bench rule fires, metrics change nothing).
void report(benchmark::State& state, const Conversation& conversation, std::size_t forwarded) {
  const auto bytes = conversation.client.size() + conversation.server.size();
  const auto messages = conversation.client_messages + conversation.server_messages;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["ns_per_message"] = benchmark::Counter(
      static_cast<double>(state.iterations() * messages), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (forwarded != bytes) state.SkipWithError("the session changed the bench traffic");
}

void BM_rules(benchmark::State& state) {
  static const Conversation conversation = build_session(kRounds);
  static const auto all = bench_rules(true);
  static const auto quirks = bench_rules(false);
  const policy::RuleStore* store = state.range(0) == 1 ? all.get() : state.range(0) == 2 ? quirks.get() : nullptr;
  session::SessionSettings settings;
  settings.client_leg.tls = true;
  settings.rules = store;
  std::size_t forwarded = 0;
  for (auto _ : state) {
    session::Session session(settings);
    forwarded = play(conversation, session);
    benchmark::DoNotOptimize(forwarded);
  }
  report(state, conversation, forwarded);
  state.counters["rules"] = store ? static_cast<double>(store->current()->rules.size()) : 0;
}
BENCHMARK(BM_rules)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

void BM_metrics(benchmark::State& state) {
  static const Conversation conversation = build_session(kRounds);
  observe::Metrics metrics(identify::builtin_signatures().families, nullptr);
  session::SessionSettings settings;
  settings.client_leg.tls = true;
  std::size_t forwarded = 0;
  for (auto _ : state) {
    auto observer = metrics.session_started({"imap", "none", 1, "127.0.0.1:1"});
    session::Session session(settings);
    session.set_observer(observer.get());
    forwarded = play(conversation, session);
    benchmark::DoNotOptimize(forwarded);
  }
  report(state, conversation, forwarded);
}
BENCHMARK(BM_metrics)->Unit(benchmark::kMicrosecond);

void BM_inspector(benchmark::State& state) {
  static const Conversation conversation = build_session(kRounds);
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / "imapscope-inspector-bench";
  fs::remove_all(dir);
  inspect::InspectorOptions options;
  if (state.range(0) >= 1) options.transcripts.emplace().dir = dir.string();
  if (state.range(0) == 2) options.body_cap = 64 << 10;
  std::size_t forwarded = 0;
  {
    inspect::Inspector inspector(options);
    session::SessionSettings settings;
    settings.client_leg.tls = true;
    std::uint64_t id = 0;
    for (auto _ : state) {
      auto observer = inspector.session_started({"imap", "none", ++id, "127.0.0.1:1"});
      session::Session session(settings);
      session.set_observer(observer.get());
      forwarded = play(conversation, session);
      benchmark::DoNotOptimize(forwarded);
    }
    if (auto* writer = inspector.writer()) state.counters["dropped_lines"] = static_cast<double>(writer->dropped());
  }
  fs::remove_all(dir);
  report(state, conversation, forwarded);
}
BENCHMARK(BM_inspector)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace imapscope::bench

BENCHMARK_MAIN();
