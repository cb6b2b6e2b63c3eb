#include "proxy/policy/matcher.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"

namespace imapscope::policy {
namespace {

bool any_iequal(const std::vector<std::string>& list, std::string_view value) {
  return std::any_of(list.begin(), list.end(), [&](const std::string& s) { return imap::iequals(s, value); });
}

bool only_capability_edits(const Actions& a) {
  return (!a.hide_capabilities.empty() || !a.add_capabilities.empty()) && !a.drop && a.replace.empty() &&
         !a.answer && !a.rewrite && a.inject_before.empty() && a.inject_after.empty() && a.delay.count() == 0 &&
         a.thin_keepalives.count() == 0;
}

}  // namespace

Phase phase_of(const imap::SessionState& state, bool idle) {
  if (idle && (state.client_input() == imap::ClientInput::IdleDone ||
               (state.client_input() == imap::ClientInput::AwaitingServer &&
                state.wait_reason() == imap::WaitReason::Idle))) {
    return Phase::Idle;
  }
  switch (state.protocol_state()) {
    case imap::ProtocolState::NotAuthenticated: return Phase::NotAuthenticated;
    case imap::ProtocolState::Authenticated: return Phase::Authenticated;
    case imap::ProtocolState::Selected: return Phase::Selected;
    case imap::ProtocolState::Logout: break;
  }
  return Phase::Authenticated;
}

void Verdict::clear() {
  rules.clear();
  set.reset();
  drop = false;
  answer = nullptr;
  rewrite = nullptr;
  delay = std::chrono::milliseconds(0);
  thin_keepalives = std::chrono::seconds(0);
  replace = capabilities = inject = false;
}

bool applies_to(const Match& m, const identify::ClientInfo& client) {
  if (!m.families.empty() && std::find(m.families.begin(), m.families.end(), client.family) == m.families.end()) {
    return false;
  }
  if (m.methods != 0 && !(m.methods & bit(client.method))) return false;
  // A guess below what the rule needs doesn't trigger it (a wrong family would). The
  // small margin keeps a guess of exactly the required confidence from losing to rounding.
  if (!m.families.empty() && client.method == identify::IdMethod::Heuristic &&
      (m.id_only || client.confidence + 1e-9 < m.min_confidence)) {
    return false;
  }
  if (m.version_min || m.version_max) {
    const auto version = parse_version(client.version);
    if (!version) return false;
    if (m.version_min && *version < *m.version_min) return false;
    if (m.version_max && !(*version <= *m.version_max)) return false;
  }
  return true;
}

bool matches(const Match& m, const MessageFacts& f) {
  if (m.phases != 0 && !(m.phases & bit(f.phase))) return false;
  if (m.kinds != 0 && !(m.kinds & bit(f.kind))) return false;
  if (!m.commands.empty()) {
    const bool by_name = f.direction == Direction::Client || f.kind == MessageKind::Tagged;
    if (by_name) {
      if (!any_iequal(m.commands, f.command)) return false;
    } else if (std::none_of(f.pending.begin(), f.pending.end(), [&](const imap::PendingCommand& p) {
                 return any_iequal(m.commands, imap::verb_name(p.verb));
               })) {
      return false;
    }
  }
  if (!m.names.empty() && (f.kind != MessageKind::Data || !any_iequal(m.names, f.name))) return false;
  if (!m.statuses.empty() && std::find(m.statuses.begin(), m.statuses.end(), f.status) == m.statuses.end()) {
    return false;
  }
  if (!m.codes.empty() && (f.code.empty() || !any_iequal(m.codes, f.code))) return false;
  if (m.text && !re2::RE2::PartialMatch(f.line, *m.text)) return false;
  return true;
}

void SessionRules::note_identity(const identify::ClientInfo& client) {
  if (guessing_ && client.family != guess_ && !acted_on_guess_.empty()) {
    overturned_.push_back(OverturnedGuess{guess_, client.family, client.method, std::move(acted_on_guess_)});
  }
  if (!guessing_ || client.family != guess_) acted_on_guess_.clear();
  guessing_ = client.method == identify::IdMethod::Heuristic;
  guess_ = client.family;
}

void SessionRules::refresh(const identify::ClientInfo& client, std::uint32_t client_revision) {
  const auto generation = store_->generation();
  if (generation == generation_ && client_revision == client_revision_) return;
  if (generation != generation_) {
    set_ = store_->current();
    generation_ = generation;
    hit_slots_.assign(std::min<std::size_t>(set_->rules.size(), kNoSlot), kNoSlot);
  }
  if (client_revision != client_revision_) note_identity(client);
  client_revision_ = client_revision;
  client_rules_.clear();
  server_rules_.clear();
  const auto& rules = set_->rules;
  for (std::size_t i = 0; i < rules.size() && i < kNoSlot; ++i) {
    if (!applies_to(rules[i].match, client)) continue;
    auto& list = rules[i].match.direction == Direction::Client ? client_rules_ : server_rules_;
    list.push_back(static_cast<std::uint16_t>(i));
  }
}

const Verdict& SessionRules::evaluate(const MessageFacts& facts) {
  const bool client = facts.direction == Direction::Client;
  Verdict& v = verdicts_[client ? 0 : 1];
  v.clear();
  for (const auto index : client ? client_rules_ : server_rules_) {
    const Rule& rule = set_->rules[index];
    const Actions& a = rule.actions;
    if (only_capability_edits(a) && !facts.carries_capabilities) continue;
    // The first rule that answers or rewrites a command decides it; later ones don't hit.
    if ((a.answer || a.rewrite) && (v.answer || v.rewrite)) continue;
    if (!matches(rule.match, facts)) continue;
    if (v.rules.empty()) v.set = set_;
    v.rules.push_back(&rule);
    v.drop = v.drop || a.drop;
    if (a.answer) v.answer = &*a.answer;
    if (a.rewrite) v.rewrite = &*a.rewrite;
    v.delay = std::max(v.delay, a.delay);
    v.thin_keepalives = std::max(v.thin_keepalives, a.thin_keepalives);
    v.replace = v.replace || !a.replace.empty();
    v.capabilities = v.capabilities || !a.hide_capabilities.empty() || !a.add_capabilities.empty();
    v.inject = v.inject || !a.inject_before.empty() || !a.inject_after.empty();
    rule.hits->fetch_add(1, std::memory_order_relaxed);
    std::uint16_t& slot = hit_slots_[index];
    if (slot == kNoSlot) {
      // First hit under this rule set: the rule may have hit under an earlier one.
      auto it = std::find_if(hits_.begin(), hits_.end(), [&](const auto& h) { return h.first == rule.name; });
      if (it == hits_.end()) it = hits_.emplace(hits_.end(), rule.name, 0);
      slot = static_cast<std::uint16_t>(it - hits_.begin());
    }
    ++hits_[slot].second;
    // Rare (a hit on a guessed client): remember which rules acted on the guess.
    if (guessing_ && !rule.match.families.empty() &&
        std::find(acted_on_guess_.begin(), acted_on_guess_.end(), rule.name) == acted_on_guess_.end()) {
      acted_on_guess_.push_back(rule.name);
    }
  }
  return v;
}

}  // namespace imapscope::policy
