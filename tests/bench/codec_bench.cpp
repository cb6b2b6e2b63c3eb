// Decoding throughput of the sans-IO codec on one core, fed the way the relay feeds
// it: a view of each socket read, next() in a loop until NeedMore (or Blocked).
//
//   BM_fetch_literals   a UID FETCH of 1 MiB bodies, server side, 64 KiB reads: the
//                       bulk path, where literal payload passes through as views
//   BM_session_*        a mail client session, 16 KiB reads (session_bench.cpp)
//
// Every benchmark checks the events it got (Message count, bytes covered, no Error or
// Skipped) on every iteration and stops with SkipWithError otherwise: a broken codec
// that drops input must not print a fine figure. A fuller semantic check (what the
// messages were, whether tagged responses matched their commands) runs once, untimed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "tests/bench/bench_support.hpp"

namespace imapscope::bench {
namespace {

using imap::Event;
using imap::EventKind;

constexpr std::size_t kRead = 64 * 1024;  // the relay's read size for bulk transfers
constexpr std::size_t kBodySize = 1024 * 1024;
constexpr std::size_t kBodies = 16;

struct FetchStream {
  std::string command;    // the client's UID FETCH, decoded first so the OK matches it
  std::string responses;  // kBodies FETCH responses with a 1 MiB literal each, then the OK
  std::uint64_t messages = 0;
};

FetchStream build_fetch_stream() {
  FetchStream s;
  s.command = "a1 UID FETCH 1:* BODY[]\r\n";
  const std::string body = make_text(kBodySize);
  for (std::size_t n = 1; n <= kBodies; ++n) {
    s.responses += cat("* ", n, " FETCH (UID ", 1000 + n, " BODY[] {", body.size(), "}\r\n", body, ")\r\n");
  }
  s.responses += "a1 OK Fetch completed (0.012 + 0.000 + 0.011 secs).\r\n";
  s.messages = kBodies + 1;
  return s;
}

// Decodes the command, then the responses in kRead reads, like one relay session.
// check(ev, decoder) sees every response event that covers bytes.
template <typename Check>
std::string decode_fetch(const FetchStream& s, Check&& check) {
  imap::SessionState state;
  imap::CommandDecoder commands(state);
  imap::ResponseDecoder responses(state);
  std::string_view command = s.command;
  Tally command_tally;
  for (;;) {
    Event ev = commands.next(command);
    benchmark::DoNotOptimize(ev);
    if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
    command_tally.add(ev);
  }
  if (auto error = check_tally("command", command_tally, 1, s.command.size()); !error.empty()) return error;

  Tally tally;
  const std::string_view stream = s.responses;
  for (std::size_t pos = 0; pos < stream.size(); pos += kRead) {
    std::string_view read = stream.substr(pos, kRead);
    for (;;) {
      Event ev = responses.next(read);
      benchmark::DoNotOptimize(ev);
      // The response decoder blocks only after STARTTLS or COMPRESS: here that would
      // be a bug, and the bytes it leaves show up as not covered.
      if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
      tally.add(ev);
      check(ev, responses);
    }
  }
  return check_tally("responses", tally, s.messages, stream.size());
}

// The semantic check: every FETCH carries its whole literal, the OK completes the UID FETCH.
std::string validate_fetch(const FetchStream& s) {
  std::string problem;
  std::uint64_t literal_bytes = 0;
  auto check = [&](const Event& ev, const imap::ResponseDecoder& d) {
    if (ev.kind == EventKind::LiteralData) literal_bytes += ev.raw.size();
    if (ev.kind != EventKind::Message || !problem.empty()) return;
    const auto& r = d.response();
    if (r.malformed || r.rejected) problem = "a malformed or rejected response";
    if (r.kind == imap::ResponseKind::Data && (r.name != imap::ResponseName::Fetch || r.literal_bytes != kBodySize)) {
      problem = "a FETCH response without its body";
    }
    if (r.kind == imap::ResponseKind::Tagged && !(r.matched && r.command_verb == imap::Verb::Fetch && r.command_uid)) {
      problem = "the tagged OK does not complete the UID FETCH";
    }
  };
  if (auto error = decode_fetch(s, check); !error.empty()) return error;
  if (!problem.empty()) return problem;
  if (literal_bytes != kBodies * kBodySize) return "literal payload bytes lost";
  return {};
}

void BM_fetch_literals(benchmark::State& state) {
  const FetchStream s = build_fetch_stream();
  if (auto error = validate_fetch(s); !error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  auto no_check = [](const Event&, const imap::ResponseDecoder&) {};
  for (auto _ : state) {
    if (auto error = decode_fetch(s, no_check); !error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.responses.size()));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * s.messages));
}
BENCHMARK(BM_fetch_literals)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace imapscope::bench

BENCHMARK_MAIN();
