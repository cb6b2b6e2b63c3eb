// Decoding throughput on a mail client session (see conversation.hpp): many small
// commands and responses, 16 KiB reads.
//
//   BM_session_both     the relay loop over both directions; bytes of both
//   BM_session_client   the client stream alone
//   BM_session_server   the relay loop, counting only the time in the response decoder
//
// The server stream needs the client decoder alongside: its tagged responses match
// only commands the client decoder has registered. So BM_session_server times each
// pump of the response decoder (next() until NeedMore) with steady_clock, at the cost
// of about one clock read (~30 ns here) per pump: with the "pumps" counter's 401 per
// session, ~1% of the figure. The client stream needs nothing from the server but the
// "+" that lets it past IDLE: BM_session_client hands it that through SessionState,
// as the response decoder would, and has no clock in its loop. Its pending table is
// never drained, so it pays for growing that vector (~3% of its time under callgrind).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "tests/bench/bench_support.hpp"
#include "tests/bench/conversation.hpp"

namespace imapscope::bench {
namespace {

using imap::Event;
using imap::EventKind;

constexpr std::size_t kRead = 16 * 1024;  // the relay's read size for interactive traffic
constexpr int kRounds = 400;              // ~100 KB client, ~590 KB server

struct SessionRun {
  Tally client, server;
  double server_seconds = 0;  // kTimed runs only
  std::uint64_t client_pumps = 0, server_pumps = 0;
};

// Adds the time of one pump of the response decoder to total when kTimed; costs
// nothing otherwise.
template <bool kTimed>
class PumpTimer {
 public:
  explicit PumpTimer(double& total) : total_(total) {
    if constexpr (kTimed) start_ = std::chrono::steady_clock::now();
  }
  ~PumpTimer() {
    if constexpr (kTimed) total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  PumpTimer(const PumpTimer&) = delete;
  PumpTimer& operator=(const PumpTimer&) = delete;

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_{};
};

// Plays the conversation like a relay: the client side in kRead reads until its
// decoder blocks (IDLE) or the stream ends, then the server side as far as the
// server has answered what the client decoder has consumed (Conversation::gates),
// and again. check.client(ev, decoder) and check.server(ev, decoder) see every event
// that covers bytes. Returns what went wrong, or nothing.
template <bool kTimed, typename Check>
std::string play_session(const Conversation& c, SessionRun& run, Check& check) {
  imap::SessionState state;
  imap::CommandDecoder commands(state);
  imap::ResponseDecoder responses(state);
  const std::string_view client = c.client, server = c.server;
  std::string_view client_read, server_read;  // what is left of the current reads
  std::size_t client_pos = 0, server_pos = 0, server_limit = 0, gate = 0;
  while (client_pos < client.size() || !client_read.empty() || server_pos < server.size()) {
    bool progress = false;
    ++run.client_pumps;
    for (;;) {
      if (client_read.empty()) {
        if (client_pos == client.size()) break;
        client_read = client.substr(client_pos, kRead);
        client_pos += client_read.size();
      }
      Event ev = commands.next(client_read);
      benchmark::DoNotOptimize(ev);
      if (ev.kind == EventKind::Blocked) break;
      if (ev.kind == EventKind::NeedMore) {
        if (!client_read.empty()) return "client: NeedMore left input unconsumed";
        continue;
      }
      run.client.add(ev);
      check.client(ev, commands);
      progress = true;
    }
    const std::size_t client_consumed = client_pos - client_read.size();
    while (gate < c.gates.size() && c.gates[gate].client_end <= client_consumed) {
      server_limit = c.gates[gate++].server_end;
    }
    {
      PumpTimer<kTimed> timer(run.server_seconds);
      ++run.server_pumps;
      for (;;) {
        if (server_read.empty()) {
          if (server_pos == server_limit) break;
          server_read = server.substr(server_pos, std::min(kRead, server_limit - server_pos));
          server_pos += server_read.size();
        }
        Event ev = responses.next(server_read);
        benchmark::DoNotOptimize(ev);
        if (ev.kind == EventKind::Blocked) return "server: the response decoder blocked";
        if (ev.kind == EventKind::NeedMore) {
          if (!server_read.empty()) return "server: NeedMore left input unconsumed";
          continue;
        }
        run.server.add(ev);
        check.server(ev, responses);
        progress = true;
      }
    }
    if (!progress) return cat("deadlock: client at byte ", client_consumed, ", server at byte ", server_pos);
  }
  if (auto error = check_tally("client", run.client, c.client_messages, client.size()); !error.empty()) return error;
  return check_tally("server", run.server, c.server_messages, server.size());
}

// Decodes the client stream alone in kRead reads. When the decoder blocks (IDLE) it
// gets the server's "+" the way the response decoder would give it. With no tagged
// responses the pending table only grows: the limit is raised to hold the session.
template <typename Check>
std::string decode_client_alone(const Conversation& c, Tally& tally, Check& check) {
  imap::DecoderLimits limits;
  limits.max_pending_commands = static_cast<std::size_t>(c.client_messages);
  imap::SessionState state(limits);
  imap::CommandDecoder commands(state, limits);
  const std::string_view client = c.client;
  for (std::size_t pos = 0; pos < client.size(); pos += kRead) {
    std::string_view read = client.substr(pos, kRead);
    for (;;) {
      Event ev = commands.next(read);
      benchmark::DoNotOptimize(ev);
      if (ev.kind == EventKind::NeedMore) break;
      if (ev.kind == EventKind::Blocked) {
        if (state.on_continuation() != imap::ContinuationFor::Idle) return "client: blocked, and not by IDLE";
      }
      tally.add(ev);
      check.client(ev, commands);
    }
  }
  if (tally.count(EventKind::Blocked) != c.idles) return "client: did not block once per IDLE";
  return check_tally("client", tally, c.client_messages, client.size());
}

struct NoCheck {
  void client(const Event&, const imap::CommandDecoder&) {}
  void server(const Event&, const imap::ResponseDecoder&) {}
};

// The semantic check: every command well-formed, every tagged OK matching its
// command, every "+" answering an IDLE.
struct SessionCheck {
  std::string problem;
  std::uint64_t matched = 0, idle_continuations = 0;

  void client(const Event& ev, const imap::CommandDecoder& d) {
    const auto& cmd = d.command();
    if (ev.kind == EventKind::Message && (cmd.malformed || cmd.rejected || cmd.aborted) && problem.empty()) {
      problem = cat("client: bad command ", cmd.tag, " ", cmd.name);
    }
  }
  void server(const Event& ev, const imap::ResponseDecoder& d) {
    if (ev.kind != EventKind::Message) return;
    const auto& r = d.response();
    if ((r.malformed || r.rejected) && problem.empty()) problem = cat("server: bad response ", r.tag, " ", r.name_text);
    if (r.kind == imap::ResponseKind::Tagged && r.matched && r.status == imap::Status::Ok) ++matched;
    if (r.kind == imap::ResponseKind::Continuation && r.continuation_for == imap::ContinuationFor::Idle) {
      ++idle_continuations;
    }
  }
};

std::string validate_session(const Conversation& c) {
  SessionRun run;
  SessionCheck check;
  if (auto error = play_session<false>(c, run, check); !error.empty()) return error;
  if (!check.problem.empty()) return check.problem;
  if (check.matched != c.tagged) return cat(check.matched, " tagged OKs matched their command, of ", c.tagged);
  if (check.idle_continuations != c.idles) return cat(check.idle_continuations, " \"+\" answered IDLE, of ", c.idles);
  Tally alone;
  SessionCheck alone_check;
  if (auto error = decode_client_alone(c, alone, alone_check); !error.empty()) return error;
  return alone_check.problem;
}

enum class Side { Client, Server, Both };

void run_session_benchmark(benchmark::State& state, Side side) {
  const Conversation c = build_session(kRounds);
  if (auto error = validate_session(c); !error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  NoCheck no_check;
  std::uint64_t pumps = 0;
  for (auto _ : state) {
    SessionRun run;
    std::string error;
    switch (side) {
      case Side::Client:
        error = decode_client_alone(c, run.client, no_check);
        break;
      case Side::Server:
        error = play_session<true>(c, run, no_check);
        state.SetIterationTime(run.server_seconds);
        pumps += run.server_pumps;
        break;
      case Side::Both:
        error = play_session<false>(c, run, no_check);
        pumps += run.client_pumps;
        break;
    }
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
  }
  const bool client = side != Side::Server, server = side != Side::Client;
  const std::uint64_t bytes = (client ? c.client.size() : 0) + (server ? c.server.size() : 0);
  const std::uint64_t messages = (client ? c.client_messages : 0) + (server ? c.server_messages : 0);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * messages));
  if (side != Side::Client) {
    state.counters["pumps"] = benchmark::Counter(static_cast<double>(pumps), benchmark::Counter::kAvgIterations);
  }
}

void BM_session_both(benchmark::State& state) { run_session_benchmark(state, Side::Both); }
void BM_session_client(benchmark::State& state) { run_session_benchmark(state, Side::Client); }
void BM_session_server(benchmark::State& state) { run_session_benchmark(state, Side::Server); }
BENCHMARK(BM_session_both)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_session_client)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_session_server)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace imapscope::bench
