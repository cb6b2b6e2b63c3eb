// Decoding throughput of the sans-IO codec on one core, fed the way the relay feeds
// it: a view of each socket read, next() in a loop until NeedMore (or Blocked).
//
//   fetch_literals   a UID FETCH of 1 MiB bodies, server side, 64 KiB reads: the bulk
//                    path, where literal payload should pass through as views
//   session_client   a typical client session, 16 KiB reads, time in the command decoder
//   session_server   the same session, time in the response decoder
//   session_both     the same session, both decoders (and the driver) together
//
// Every benchmark checks the events it got (Message count, bytes covered, no Error or
// Skipped) and stops with SkipWithError otherwise: a broken codec that drops input
// must not print a fine figure. A fuller semantic check runs once, before timing.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/response_decoder.hpp"

namespace {

namespace imap = imapscope::imap;
using imap::Event;
using imap::EventKind;

constexpr std::size_t kLiteralRead = 64 * 1024;  // a relay's read buffer for bulk transfers
constexpr std::size_t kSessionRead = 16 * 1024;  // a TLS record's worth
constexpr std::size_t kBodySize = 1024 * 1024;
constexpr std::size_t kBodies = 16;
constexpr int kSessionRounds = 400;

// Concatenates string-like and integer parts (g++ 12 has no std::format).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  auto add = [&s](const auto& part) {
    if constexpr (std::is_integral_v<std::decay_t<decltype(part)>>) {
      s += std::to_string(part);
    } else {
      s += std::string_view(part);
    }
  };
  (add(parts), ...);
  return s;
}

// What a decoder returned, by kind, and how many stream bytes the events covered.
struct Tally {
  std::array<std::uint64_t, 8> kinds{};
  std::uint64_t bytes = 0;

  void add(const Event& ev) {
    ++kinds[static_cast<std::size_t>(ev.kind)];
    bytes += ev.raw.size();
  }
  std::uint64_t count(EventKind kind) const { return kinds[static_cast<std::size_t>(kind)]; }
};

// Empty when the tally is what the stream must give, else what is wrong.
std::string check_tally(std::string_view direction, const Tally& t, std::uint64_t messages, std::uint64_t bytes) {
  if (t.count(EventKind::Error) != 0 || t.count(EventKind::Skipped) != 0) {
    return cat(direction, ": ", t.count(EventKind::Error), " Error and ", t.count(EventKind::Skipped),
               " Skipped events");
  }
  if (t.count(EventKind::Message) != messages) {
    return cat(direction, ": ", t.count(EventKind::Message), " Message events, expected ", messages);
  }
  if (t.bytes != bytes) return cat(direction, ": events cover ", t.bytes, " bytes of ", bytes);
  return {};
}

// ---------------------------------------------------------------------------------
// (a) A literal-heavy FETCH response stream.

struct FetchStream {
  std::string command;    // the client's UID FETCH, decoded first so the OK matches
  std::string responses;  // kBodies FETCH responses with a literal each, then the OK
  std::uint64_t messages = 0;
};

// A mail body: printable ASCII lines with CRLF, no NUL, exactly size bytes.
std::string make_body(std::size_t size) {
  std::string body;
  body.reserve(size + 128);
  for (unsigned line = 0; body.size() < size; ++line) {
    body += cat("Line ", line, " of a plain text body, as a mail client would fetch it: ",
                "the quick brown fox jumps over the lazy dog.\r\n");
  }
  body.resize(size);
  return body;
}

FetchStream build_fetch_stream() {
  FetchStream s;
  s.command = "a1 UID FETCH 1:* BODY[]\r\n";
  const std::string body = make_body(kBodySize);
  for (std::size_t n = 1; n <= kBodies; ++n) {
    s.responses += cat("* ", n, " FETCH (UID ", 1000 + n, " BODY[] {", body.size(), "}\r\n", body, ")\r\n");
  }
  s.responses += "a1 OK Fetch completed (0.012 + 0.000 + 0.011 secs).\r\n";
  s.messages = kBodies + 1;
  return s;
}

// Decodes the stream once; check(ev, decoder) sees every event but NeedMore.
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
  for (std::size_t pos = 0; pos < stream.size(); pos += kLiteralRead) {
    std::string_view read = stream.substr(pos, kLiteralRead);
    for (;;) {
      Event ev = responses.next(read);
      benchmark::DoNotOptimize(ev);
      if (ev.kind == EventKind::NeedMore) break;
      // The response decoder blocks only for STARTTLS/COMPRESS: here that is a bug,
      // which shows as uncovered bytes.
      if (ev.kind == EventKind::Blocked) break;
      tally.add(ev);
      check(ev, responses);
    }
  }
  return check_tally("responses", tally, s.messages, stream.size());
}

// The semantic check: every FETCH has its whole literal, the OK completes the UID FETCH.
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
  auto error = decode_fetch(s, check);
  if (!error.empty()) return error;
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
BENCHMARK(BM_fetch_literals)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------------
// (b) A mail client session: small commands and responses, IDLE in between.

struct Conversation {
  std::string client, server;
  std::uint64_t client_messages = 0, server_messages = 0;
  std::uint64_t tagged = 0, idles = 0;
  // Causality: the server bytes up to server_end exist only once the client decoder
  // has consumed client_end bytes (the server answers what it was sent).
  struct Gate {
    std::size_t client_end, server_end;
  };
  std::vector<Gate> gates;
};

class ConversationBuilder {
 public:
  std::string next_tag() { return cat("a", ++tag_); }
  void client(std::string_view line) {
    c_.client += cat(line, "\r\n");
    ++c_.client_messages;
  }
  void server(std::string_view line) {
    c_.server += cat(line, "\r\n");
    ++c_.server_messages;
    c_.gates.push_back({c_.client.size(), c_.server.size()});
  }
  void tagged_ok(std::string_view tag, std::string_view text) {
    server(cat(tag, " OK ", text));
    ++c_.tagged;
  }
  Conversation& conversation() { return c_; }

 private:
  Conversation c_;
  unsigned tag_ = 0;
};

constexpr std::string_view kCapabilities =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY LITERAL+ NOTIFY SPECIAL-USE";
constexpr std::array<std::string_view, 6> kFlags = {
    R"(\Seen)", R"(\Seen $NotJunk)", "", R"(\Answered \Seen)", R"(\Flagged \Seen)", R"(\Seen NonJunk)"};

void select_inbox(ConversationBuilder& b, unsigned exists, unsigned uid_next) {
  const auto tag = b.next_tag();
  b.client(cat(tag, " SELECT INBOX (CONDSTORE)"));
  b.server(R"(* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $NotJunk NonJunk))");
  b.server(R"(* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $NotJunk NonJunk \*)] Flags permitted.)");
  b.server(cat("* ", exists, " EXISTS"));
  b.server("* 0 RECENT");
  b.server(cat("* OK [UNSEEN ", exists - 3, "] First unseen."));
  b.server("* OK [UIDVALIDITY 1700000000] UIDs valid");
  b.server(cat("* OK [UIDNEXT ", uid_next, "] Predicted next UID"));
  b.server(cat("* OK [HIGHESTMODSEQ ", 90000 + uid_next, "] Highest"));
  b.tagged_ok(tag, "[READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).");
}

Conversation build_session() {
  ConversationBuilder b;
  b.server(cat("* OK [CAPABILITY ", kCapabilities, "] Dovecot ready."));
  auto tag = b.next_tag();
  b.client(cat(tag, R"( LOGIN alice "correct horse battery staple")"));
  b.tagged_ok(tag, cat("[CAPABILITY ", kCapabilities, "] Logged in"));
  unsigned exists = 3000, uid_next = 40001;
  select_inbox(b, exists, uid_next);
  const std::string headers = make_body(600);  // the header fields of a new message
  for (int round = 0; round < kSessionRounds; ++round) {
    // Resynchronise the flags of the last messages.
    tag = b.next_tag();
    b.client(cat(tag, " UID FETCH ", uid_next - 12, ":* (UID FLAGS)"));
    for (unsigned k = 0; k < 12; ++k) {
      b.server(cat("* ", exists - 11 + k, " FETCH (UID ", uid_next - 12 + k, " FLAGS (", kFlags[k % kFlags.size()], "))"));
    }
    b.tagged_ok(tag, "Fetch completed (0.001 + 0.000 secs).");
    // The user reads a message.
    tag = b.next_tag();
    b.client(cat(tag, " UID STORE ", uid_next - 3, R"( +FLAGS (\Seen))"));
    b.server(cat("* ", exists - 2, R"( FETCH (UID )", uid_next - 3, R"( MODSEQ ()", 90000 + uid_next, R"() FLAGS (\Seen)))"));
    b.tagged_ok(tag, "Store completed (0.001 + 0.000 secs).");
    tag = b.next_tag();
    b.client(cat(tag, " NOOP"));
    b.tagged_ok(tag, "NOOP completed (0.001 + 0.000 secs).");
    if (round % 8 == 7) select_inbox(b, exists, uid_next);
    // Wait for new mail; one arrives.
    tag = b.next_tag();
    b.client(cat(tag, " IDLE"));
    b.server("+ idling");
    ++b.conversation().idles;
    ++exists;
    b.server(cat("* ", exists, " EXISTS"));
    b.client("DONE");
    b.tagged_ok(tag, "Idle completed (0.001 + 29.998 secs).");
    // Fetch the new message's headers: a small literal, kept with its message.
    tag = b.next_tag();
    b.client(cat(tag, " UID FETCH ", uid_next, " (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO CC ",
                 "SUBJECT DATE MESSAGE-ID REFERENCES IN-REPLY-TO CONTENT-TYPE)])"));
    b.server(cat("* ", exists, " FETCH (UID ", uid_next, " RFC822.SIZE 4321 FLAGS () BODY[HEADER.FIELDS (FROM TO CC ",
                 "SUBJECT DATE MESSAGE-ID REFERENCES IN-REPLY-TO CONTENT-TYPE)] {", headers.size(), "}\r\n", headers,
                 ")"));
    b.tagged_ok(tag, "Fetch completed (0.001 + 0.000 secs).");
    ++uid_next;
  }
  tag = b.next_tag();
  b.client(cat(tag, " LOGOUT"));
  b.server("* BYE Logging out");
  b.tagged_ok(tag, "Logout completed (0.001 + 0.000 secs).");
  return std::move(b.conversation());
}

struct SessionRun {
  Tally client, server;
  double client_seconds = 0, server_seconds = 0;  // kTimed only
};

// Times a pump of one decoder when kTimed; a no-op otherwise.
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

// Plays the conversation like a relay: the client side in 16 KiB reads until it blocks
// (IDLE) or runs dry, then the server side as far as the client has been read, and
// again. check.client(ev, decoder) and check.server(ev, decoder) see every event that
// covers bytes.
template <bool kTimed, typename Check>
std::string play_session(const Conversation& c, SessionRun& run, Check&& check) {
  imap::SessionState state;
  imap::CommandDecoder commands(state);
  imap::ResponseDecoder responses(state);
  const std::string_view client = c.client, server = c.server;
  std::string_view client_read, server_read;
  std::size_t client_pos = 0, server_pos = 0, server_limit = 0, gate = 0;
  while (client_pos < client.size() || !client_read.empty() || server_pos < server.size()) {
    bool progress = false;
    {
      PumpTimer<kTimed> timer(run.client_seconds);
      for (;;) {
        if (client_read.empty()) {
          if (client_pos == client.size()) break;
          client_read = client.substr(client_pos, kSessionRead);
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
    }
    const std::size_t client_consumed = client_pos - client_read.size();
    while (gate < c.gates.size() && c.gates[gate].client_end <= client_consumed) server_limit = c.gates[gate++].server_end;
    {
      PumpTimer<kTimed> timer(run.server_seconds);
      for (;;) {
        if (server_read.empty()) {
          if (server_pos == server_limit) break;
          server_read = server.substr(server_pos, std::min(kSessionRead, server_limit - server_pos));
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

struct NoCheck {
  void client(const Event&, const imap::CommandDecoder&) {}
  void server(const Event&, const imap::ResponseDecoder&) {}
};

// The semantic check: every command well-formed, every tagged OK matches its command,
// every "+" answers an IDLE.
struct SessionCheck {
  std::string problem;
  std::uint64_t matched = 0, idle_continuations = 0;

  void client(const Event& ev, const imap::CommandDecoder& d) {
    const auto& cmd = d.command();
    if (ev.kind == EventKind::Message && (cmd.malformed || cmd.rejected || cmd.aborted)) {
      problem = cat("client: bad command ", cmd.tag, " ", cmd.name);
    }
  }
  void server(const Event& ev, const imap::ResponseDecoder& d) {
    if (ev.kind != EventKind::Message) return;
    const auto& r = d.response();
    if (r.malformed || r.rejected) problem = cat("server: bad response ", r.tag, " ", r.name_text);
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
  if (check.matched != c.tagged) return cat(check.matched, " tagged OKs matched their command of ", c.tagged);
  if (check.idle_continuations != c.idles) return "a \"+\" did not answer IDLE";
  return {};
}

enum class Side { Client, Server, Both };

void run_session_benchmark(benchmark::State& state, Side side) {
  const Conversation c = build_session();
  if (auto error = validate_session(c); !error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  for (auto _ : state) {
    SessionRun run;
    const auto error = side == Side::Both ? play_session<false>(c, run, NoCheck{}) : play_session<true>(c, run, NoCheck{});
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    if (side != Side::Both) state.SetIterationTime(side == Side::Client ? run.client_seconds : run.server_seconds);
  }
  const std::uint64_t bytes = side == Side::Client   ? c.client.size()
                              : side == Side::Server ? c.server.size()
                                                     : c.client.size() + c.server.size();
  const std::uint64_t messages = side == Side::Client   ? c.client_messages
                                 : side == Side::Server ? c.server_messages
                                                        : c.client_messages + c.server_messages;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * messages));
}

// Client and server each count only the time spent in their own decoder (manual time);
// both counts the whole relay loop, with no clock calls in it.
void BM_session_client(benchmark::State& state) { run_session_benchmark(state, Side::Client); }
void BM_session_server(benchmark::State& state) { run_session_benchmark(state, Side::Server); }
void BM_session_both(benchmark::State& state) { run_session_benchmark(state, Side::Both); }
BENCHMARK(BM_session_client)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_session_server)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_session_both)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
