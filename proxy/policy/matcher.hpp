// Which rules hit a message. The session describes each message with MessageFacts
// (no rule syntax involved) and gets back a Verdict: the rules that hit, with their
// actions summed up. Per session, SessionRules keeps only the rules that can apply
// to its client, so a client that no rule targets costs one comparison per message.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/identify/client_info.hpp"
#include "proxy/imap/session_state.hpp"
#include "proxy/policy/rule_set.hpp"

namespace imapscope::policy {

struct MessageFacts {
  Direction direction = Direction::Server;
  Phase phase = Phase::NotAuthenticated;
  MessageKind kind = MessageKind::Data;
  // Client: the command's name. Server, tagged: the name of the command it completes
  // ("" when unknown). Server, untagged or "+": see pending.
  std::string_view command;
  std::span<const imap::PendingCommand> pending;  // server: the commands in progress
  std::string_view name;                          // server data: its name as sent
  imap::Status status = imap::Status::None;
  std::string_view code;                          // response code name, "" for none
  std::string_view line;                          // the first line, without CRLF
  bool carries_capabilities = false;              // CAPABILITY data or a [CAPABILITY] code
};

// Phase of a session for matching: IDLE counts as its own phase for server
// responses; a client's tagged command is never inside IDLE (the IDLE command itself
// matches in the state it was sent in), so for commands pass idle = false.
Phase phase_of(const imap::SessionState& state, bool idle);

struct Verdict {
  std::vector<const Rule*> rules;  // every rule that hit, in rule order
  std::shared_ptr<const RuleSet> set;  // keeps those rules alive across a reload
  bool drop = false;
  const Answer* answer = nullptr;          // the first answering rule
  const CommandRewrite* rewrite = nullptr; // the first rewriting rule
  std::chrono::milliseconds delay{0};      // the longest delay
  std::chrono::seconds thin_keepalives{0};  // the longest interval of a thinning rule
  bool replace = false;
  bool capabilities = false;
  bool inject = false;
  bool empty() const { return rules.empty(); }
  void clear();
};

// Rules acted on a heuristic guess of the client's family, and the client turned out
// to be another one (its ID, or a later guess): the administrator must know which
// rules acted on the wrong client.
struct OverturnedGuess {
  std::string guessed;     // the family the rules acted on
  std::string identified;  // the family now ("unknown" when the guess was withdrawn)
  identify::IdMethod method = identify::IdMethod::Unknown;  // how the new family was found
  std::vector<std::string> rules;  // names of the rules that hit under the guess, in order
};

class SessionRules {
 public:
  explicit SessionRules(const RuleStore& store) : store_(&store) {}

  // Before each message: picks up a reloaded rule set and a changed client
  // identity. Cheap when neither changed.
  void refresh(const identify::ClientInfo& client, std::uint32_t client_revision);
  // Some rule can hit messages of this direction for this client.
  bool active(Direction direction) const {
    return !(direction == Direction::Client ? client_rules_ : server_rules_).empty();
  }
  // The rules that hit this message; valid until the next evaluate() for the same
  // direction. Counts the hits.
  const Verdict& evaluate(const MessageFacts& facts);

  // Hits of this session per rule name, in order of first hit (for its log line).
  const std::vector<std::pair<std::string, std::uint32_t>>& hits() const { return hits_; }
  // Every overturned guess of this session that rules acted on, in order.
  const std::vector<OverturnedGuess>& overturned() const { return overturned_; }
  // The rule set in use; a session keeps it alive while it still acts on its rules.
  const std::shared_ptr<const RuleSet>& rule_set() const { return set_; }

 private:
  void note_identity(const identify::ClientInfo& client);

  const RuleStore* store_;
  std::shared_ptr<const RuleSet> set_;
  std::uint64_t generation_ = 0;
  std::uint32_t client_revision_ = UINT32_MAX;
  std::vector<std::uint16_t> client_rules_;  // indices into set_->rules
  std::vector<std::uint16_t> server_rules_;
  Verdict verdicts_[2];
  std::vector<std::pair<std::string, std::uint32_t>> hits_;
  std::vector<std::uint16_t> hit_slots_;  // per rule of set_: its entry in hits_, or kNoSlot
  // While the client is a heuristic guess: its family, and the rules naming families
  // that hit under it (they acted on the guess).
  bool guessing_ = false;
  std::string guess_;
  std::vector<std::string> acted_on_guess_;
  std::vector<OverturnedGuess> overturned_;
  static constexpr std::uint16_t kNoSlot = UINT16_MAX;
};

// Whether a rule's client conditions (family, version, method) hold for a client.
bool applies_to(const Match& match, const identify::ClientInfo& client);
// Whether a rule's message conditions hold for a message.
bool matches(const Match& match, const MessageFacts& facts);

}  // namespace imapscope::policy
