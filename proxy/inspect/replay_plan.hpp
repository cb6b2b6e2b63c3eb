// `imapscope replay`, the sans-IO half: turns the events of one recorded session (see
// reader.hpp) into the steps that replay its client side against a server, each
// with the bytes to send and the responses the recording says to expect; and the
// normalisation and comparison of what a server answered with what was recorded.
// No sockets, no clocks: app/replay_command.cpp sends, waits and reads.
//
// What is replayed (see docs/inspector.md, "imapscope replay"):
// - Every tagged command the server saw, with the recorded tag, one at a time (the
//   recording's pipelining is serialised). Literal payloads are the captured ones
//   (body_cap_kb) when whole and matching their size and SHA-256; otherwise they
//   are made up at the recorded size and the step is marked approximated.
// - The recorded login (LOGIN, or AUTHENTICATE and its SASL lines: redacted in the
//   transcript) becomes a LOGIN of the given user and password. Failed login
//   attempts are not replayed.
// - Not sent: STARTTLS and COMPRESS (they change the transport), commands the proxy
//   answered itself (a "P" tagged line: the server never saw them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imapscope::inspect {

// A literal of a response line: its size, and its SHA-256 (hex) when known.
struct LiteralSum {
  std::uint64_t size = 0;
  std::string sha256;
};

// One response as a transcript holds it: its line parts without CRLFs or literal
// payloads ("* 1 FETCH (BODY[] {310})"), and its literals.
struct ResponseLine {
  std::string text;
  std::vector<LiteralSum> literals;
};

// Bytes to write: `bytes`, then `padding` made-up bytes (a synthesised payload may
// be gigabytes: it is generated while it is written, never held whole).
struct Piece {
  std::string bytes;
  std::uint64_t padding = 0;
  bool padding_lines = false;  // 'x' lines ending in CRLF (a message body); else only 'x'
};

// Writes bytes [offset, offset + n) of a padding of `total` bytes into out.
void padding_bytes(std::uint64_t total, bool lines, std::uint64_t offset, std::size_t n, std::string& out);

// One write of a step. A synchronising literal or IDLE splits a command into several.
struct Send {
  std::vector<Piece> pieces;
  bool await_continuation = false;  // then wait for "+" (a tagged answer ends the command)
  std::int64_t delay_ms = 0;        // wait this long before writing (DONE after IDLE)
};

struct ReplayStep {
  std::string tag;
  std::string command;  // "SELECT", "UID FETCH"
  std::string display;  // for the report: the recorded text; a login shows no password
  std::string skipped;  // why it is not sent; empty: it is sent
  bool login = false;   // the recorded login, replaced by a LOGIN of the given user
  std::vector<Send> sends;
  // The recorded responses: untagged ones in order, then the tagged answer.
  // Continuations ("+") are left out: they are the protocol's, not the answer.
  std::vector<ResponseLine> expected;
  bool answered = false;                    // the recording holds the tagged answer
  std::vector<std::string> approximations;  // how the command differs from the recorded one
  std::vector<std::string> notes;           // what else the report should say about it
};

struct ReplayPlan {
  std::uint64_t session = 0;
  std::optional<ResponseLine> greeting;
  std::vector<ReplayStep> steps;
  bool pipelined = false;               // the recording had several commands in flight at once
  std::size_t ignored_proxy_lines = 0;  // untagged lines the proxy wrote (injected, BYE)
};

struct PlanOptions {
  std::string user, password;       // for the LOGIN that replaces the recorded login
  std::int64_t max_wait_ms = 2000;  // cap on the recorded time between IDLE and DONE
};

// events: one session, in time order (read_transcripts). Never throws on odd events:
// what can't be replayed is a skipped step.
ReplayPlan build_replay_plan(std::uint64_t session, const std::vector<nlohmann::json>& events,
                             const PlanOptions& options);

// A string argument as the server reads it back: a quoted string when it can be one,
// otherwise a synchronising literal ("{5}"); in the second case `literal` is set
// and `text` is the header only.
struct AstringArg {
  std::string text;
  std::optional<std::string> literal;
};
AstringArg astring(const std::string& value);

// What a comparison ignores: Dovecot's timing suffix in tagged text
// (" (0.001 + 0.000 + 0.000 secs)") and UIDVALIDITY values (UIDVALIDITY, APPENDUID,
// COPYUID), which differ between any two mailboxes. 8-bit bytes that aren't UTF-8
// become U+FFFD, as in transcripts.
ResponseLine normalise(ResponseLine line);

bool same_line(const ResponseLine& expected, const ResponseLine& got);
// "* 1 FETCH (BODY[] {310})  [literal 310 B sha256:0a1b2c3d4e5f]"
std::string render_line(const ResponseLine& line);

struct DiffLine {
  char op = ' ';  // ' ' in both, '-' expected only, '+' received only
  std::string text;
};
// Expected against received (both normalised), in order: the longest common
// subsequence, like diff. Returns only the edit listing; `same` when empty of changes.
struct Comparison {
  bool same = true;
  std::vector<DiffLine> lines;  // every line with its op
};
Comparison compare_responses(const std::vector<ResponseLine>& expected, const std::vector<ResponseLine>& got);

// The listing with `context` unchanged lines around each change, "..." for the rest,
// at most max_lines lines.
std::vector<std::string> diff_listing(const Comparison& c, std::size_t context = 2, std::size_t max_lines = 40);

}  // namespace imapscope::inspect
