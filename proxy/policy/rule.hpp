// A rewrite rule, typed: what it matches and what it does. Rule files (JSON, see
// rules/README.md) become these in loader.cpp; the session never sees JSON.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <re2/re2.h>

#include "proxy/identify/client_info.hpp"
#include "proxy/imap/session_state.hpp"
#include "proxy/policy/version.hpp"

namespace imapscope::policy {

enum class Direction : std::uint8_t { Client, Server };

// Bit sets: a match field that lists several values matches any of them.
enum class Phase : std::uint8_t {  // the protocol state, with IDLE as its own phase
  NotAuthenticated = 1,
  Authenticated = 2,
  Selected = 4,
  Idle = 8,
};
enum class MessageKind : std::uint8_t {
  Command = 1,         // a client's tagged command
  UntaggedStatus = 2,  // "* OK/NO/BAD/BYE/PREAUTH ..."
  Data = 4,            // "* CAPABILITY ...", "* 3 FETCH ...", "* LIST ..."
  Tagged = 8,          // the tagged result of a command
  Continuation = 16,   // "+ ..."
};
constexpr std::uint8_t bit(Phase p) { return static_cast<std::uint8_t>(p); }
constexpr std::uint8_t bit(MessageKind k) { return static_cast<std::uint8_t>(k); }
constexpr std::uint8_t bit(identify::IdMethod m) { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(m)); }

// A rule that names client families acts on a heuristic guess only when the guess
// is at least this sure, unless the rule says otherwise ("identified_by"). 0.7 is
// reached only by a distinctive signature whose every feature has matched (see
// rules/README.md, "How sure a rule needs to be").
inline constexpr double kDefaultRuleMinConfidence = 0.7;

struct Match {
  Direction direction = Direction::Server;
  // Who: empty families means any client.
  std::vector<std::string> families;
  // With families: the least identification the rule needs. id_only: the client named
  // itself with ID; else ID, or a heuristic guess with at least min_confidence.
  bool id_only = false;
  double min_confidence = kDefaultRuleMinConfidence;
  std::optional<Version> version_min;  // inclusive; a client without a version never matches
  std::optional<Version> version_max;  // inclusive
  std::uint8_t methods = 0;            // bit(IdMethod); 0: any
  // Where and what: 0 / empty means any.
  std::uint8_t phases = 0;
  std::uint8_t kinds = 0;
  std::vector<std::string> commands;   // upper case; server side: the command a response belongs to
  std::vector<std::string> names;      // upper case data names: CAPABILITY, LIST, FETCH...
  std::vector<imap::Status> statuses;  // OK, NO, BAD, BYE, PREAUTH
  std::vector<std::string> codes;      // upper case response codes: ALERT, CAPABILITY...
  std::unique_ptr<re2::RE2> text;      // searched in the message's first line (without CRLF)
};

struct Replacement {
  std::unique_ptr<re2::RE2> pattern;
  std::string with;  // RE2 rewrite string: \0 the match, \1..\9 groups
};

struct Answer {
  imap::Status status = imap::Status::Ok;
  std::string text;
  std::vector<std::string> untagged;  // "* ..." lines sent before the tagged answer, without CRLF
};

// Sends a command to the server under another name and translates its untagged
// responses back (XLIST -> LIST RETURN (SPECIAL-USE), * LIST -> * XLIST).
struct CommandRewrite {
  std::string to;                      // new command name
  std::string append;                  // added at the end of the command line ("" for none)
  std::string response_from;           // untagged data name the server answers with (LIST)
  std::string response_to;             // the name the client expects (XLIST)
  std::vector<Replacement> response_replace;  // applied to those responses after renaming
};

struct Actions {
  bool drop = false;                           // server: an untagged response is not forwarded
  std::vector<Replacement> replace;            // line text outside literals, tag excluded
  std::vector<std::string> hide_capabilities;  // upper case; a trailing '*' hides a prefix (AUTH=*)
  std::vector<std::string> add_capabilities;
  std::optional<Answer> answer;                // client: answered here, never forwarded
  std::optional<CommandRewrite> rewrite;       // client: sent as another command
  std::vector<std::string> inject_before;      // "* ..." lines for the client, without CRLF
  std::vector<std::string> inject_after;
  std::chrono::milliseconds delay{0};          // the message is held this long
  // server, untagged status: at most one matching line per this long is forwarded
  // in a session, the others are dropped (server keepalives during IDLE)
  std::chrono::seconds thin_keepalives{0};
};

struct Rule {
  std::string name;         // unique across the rule set; a metric label value
  std::string description;  // the client behaviour it fixes, for people
  std::string file;         // where it was loaded from
  Match match;
  Actions actions;
  // Hits, shared by every session and kept across reloads by name (RuleStore).
  std::shared_ptr<std::atomic<std::uint64_t>> hits = std::make_shared<std::atomic<std::uint64_t>>(0);
};

}  // namespace imapscope::policy
