// How the session applies what rules decide (policy::Verdict): answers, drops,
// rewrites, injected lines and delays. Which rules hit is the policy's business;
// keeping the stream well-formed while applying them is the session's.
#include "proxy/imap/abnf.hpp"
#include "proxy/policy/rewrite.hpp"
#include "proxy/session/message_bytes.hpp"
#include "proxy/session/session.hpp"

namespace imapscope::session {
namespace {

using policy::Direction;
using policy::MessageKind;

std::size_t index_of(Direction d) { return d == Direction::Client ? 0 : 1; }

policy::MessageKind kind_of(imap::ResponseKind kind) {
  switch (kind) {
    case imap::ResponseKind::Continuation: return MessageKind::Continuation;
    case imap::ResponseKind::Status: return MessageKind::UntaggedStatus;
    case imap::ResponseKind::Tagged: return MessageKind::Tagged;
    case imap::ResponseKind::Data: break;
  }
  return MessageKind::Data;
}

// Where the command name starts in a command's first bytes, or npos when the bytes
// don't read as "tag SP [UID SP] name".
std::size_t name_offset(std::string_view bytes, const imap::Command& c) {
  std::size_t pos = c.tag.size() + 1;
  if (c.uid) {
    if (bytes.size() < pos + 4 || !imap::iequals(bytes.substr(pos, 4), "UID ")) return std::string_view::npos;
    pos += 4;
  }
  if (bytes.size() < pos + c.name.size() || !imap::iequals(bytes.substr(pos, c.name.size()), c.name)) {
    return std::string_view::npos;
  }
  const std::size_t end = pos + c.name.size();
  if (end < bytes.size() && bytes[end] != ' ' && bytes[end] != '\r' && bytes[end] != '\n') return std::string_view::npos;
  return pos;
}

}  // namespace

const std::vector<std::pair<std::string, std::uint32_t>>& Session::rule_hits() const {
  static const std::vector<std::pair<std::string, std::uint32_t>> kNone;
  return rules_ ? rules_->hits() : kNone;
}

const std::vector<policy::OverturnedGuess>& Session::overturned_guesses() const {
  static const std::vector<policy::OverturnedGuess> kNone;
  return rules_ ? rules_->overturned() : kNone;
}

std::optional<DelayRequest> Session::take_delay_request() {
  if (!effects_) return std::nullopt;
  for (auto& request : effects_->delay_requests) {
    if (request) return std::exchange(request, std::nullopt);
  }
  return std::nullopt;
}

void Session::start_delay(Direction direction, std::chrono::milliseconds duration) {
  bool& paused = direction == Direction::Client ? commands_paused_ : responses_paused_;
  if (paused) return;
  effects().delay_requests[index_of(direction)] = DelayRequest{direction, duration};
  paused = true;
}

void Session::resume(Direction direction) {
  if (direction == Direction::Client) {
    if (!commands_paused_) return;
    commands_paused_ = false;
    to_server_ += effects_->held_commands;
    effects_->held_commands.clear();
  } else {
    if (!responses_paused_) return;
    responses_paused_ = false;
    to_client_ += effects_->held_responses;
    effects_->held_responses.clear();
    flush_deferred();
  }
}

void Session::inject(const policy::Verdict& verdict, bool before) {
  for (const policy::Rule* rule : verdict.rules) {
    for (const auto& line : before ? rule->actions.inject_before : rule->actions.inject_after) {
      std::string bytes = line + "\r\n";
      // Lines for a command go to the client at the next server message boundary;
      // lines around a response go right where it is.
      if (rule->match.direction == Direction::Client) {
        send_to_client(bytes);
      } else {
        if (observer_) observer_->proxy_to_client(bytes);
        response_queue() += bytes;
      }
    }
  }
}

const policy::Verdict* Session::judge_command(const imap::Command& c, std::string_view raw) {
  if (!rules_ || observing() || c.kind != imap::CommandKind::Tagged || c.rejected || c.malformed) return nullptr;
  rules_->refresh(identifier_.info(), identifier_.revision());
  if (!rules_->active(Direction::Client)) return nullptr;
  policy::MessageFacts facts;
  facts.direction = Direction::Client;
  facts.phase = policy::phase_of(state_, false);
  facts.kind = MessageKind::Command;
  facts.command = c.name;
  facts.line = first_line(raw);
  const policy::Verdict& verdict = rules_->evaluate(facts);
  if (verdict.empty()) return nullptr;
  if (observer_) {
    for (const policy::Rule* rule : verdict.rules) observer_->rule_hit(rule->name, true);
  }
  if (verdict.inject) {
    inject(verdict, true);
    inject(verdict, false);
  }
  if (verdict.delay.count() > 0 && !verdict.answer) start_delay(Direction::Client, verdict.delay);
  return &verdict;
}

bool Session::answer_by_rule(const imap::Command& c, const policy::Verdict& verdict) {
  if (!verdict.answer) return false;
  for (const auto& line : verdict.answer->untagged) send_to_client(line + "\r\n");
  answer(c.tag, verdict.answer->status, verdict.answer->text);
  return true;
}

void Session::send_command_bytes(std::string_view raw, bool first, bool last) {
  if (observing()) return;  // the relay forwards the compressed original
  const policy::Verdict* v = command_verdict_;
  if (!v || (!v->replace && !v->rewrite)) {
    command_queue() += raw;
    return;
  }
  // Copied only when something changes.
  std::string bytes;
  bool edited = false;
  if (v->rewrite && first) {
    const imap::Command& c = commands().command();
    const std::size_t at = name_offset(raw, c);
    if (at != std::string::npos) {
      bytes.assign(raw).replace(at, c.name.size(), v->rewrite->to);
      edited = true;
      if (!v->rewrite->response_from.empty()) effects().renamed.push_back(Renamed{std::string(c.tag), v->rewrite, v->set});
    }
  }
  for (const policy::Rule* rule : v->rules) {
    if (rule->actions.replace.empty()) continue;
    std::string replaced;
    if (policy::replace_text(edited ? std::string_view(bytes) : raw, true, first, rule->actions.replace, replaced)) {
      bytes = std::move(replaced);
      edited = true;
    }
  }
  if (v->rewrite && last && !v->rewrite->append.empty()) {
    if (!edited) bytes.assign(raw);
    edited = true;
    const std::size_t eol = line_ending(bytes).size();
    bytes.insert(bytes.size() - eol, " " + v->rewrite->append);
  }
  command_queue() += edited ? std::string_view(bytes) : raw;
}

const policy::Verdict* Session::judge_response(const imap::Response& r, std::string_view raw) {
  if (!rules_ || observing() || r.rejected || r.malformed) return nullptr;
  rules_->refresh(identifier_.info(), identifier_.revision());
  if (!rules_->active(Direction::Server)) return nullptr;
  policy::MessageFacts facts;
  facts.direction = Direction::Server;
  facts.phase = policy::phase_of(state_, true);
  facts.kind = kind_of(r.kind);
  if (r.kind == imap::ResponseKind::Tagged && r.matched && r.command_verb != imap::Verb::Other) {
    facts.command = imap::verb_name(r.command_verb);
  }
  facts.pending = state_.pending();
  if (r.kind == imap::ResponseKind::Data) facts.name = r.name_text;
  facts.status = r.status;
  facts.code = r.code;
  facts.line = first_line(raw);
  facts.carries_capabilities = (r.kind == imap::ResponseKind::Data && r.name == imap::ResponseName::Capability) ||
                               imap::iequals(r.code, "CAPABILITY");
  const policy::Verdict& verdict = rules_->evaluate(facts);
  if (verdict.empty()) return nullptr;
  if (observer_) {
    for (const policy::Rule* rule : verdict.rules) observer_->rule_hit(rule->name, false);
  }
  if (verdict.drop) {
    if (verdict.inject) inject(verdict, true);
    drop_server_message_ = true;
  }
  if (verdict.thin_keepalives.count() > 0) {
    // At most one per interval reaches the client; real news is never a keepalive.
    const auto now = settings_.clock();
    auto& forwarded = effects().keepalive_forwarded;
    if (forwarded != std::chrono::steady_clock::time_point{} && now - forwarded < verdict.thin_keepalives) {
      drop_server_message_ = true;
    } else {
      forwarded = now;
    }
  }
  if (verdict.delay.count() > 0) start_delay(Direction::Server, verdict.delay);
  return &verdict;
}

void Session::send_response_bytes(std::string_view raw, bool first, bool last) {
  if (observing()) return;
  const imap::Response& r = responses().response();
  const policy::Verdict* v = response_verdict_;
  std::string bytes;
  bool edited = first && last && rewrite_capability_lists(r, raw, bytes);
  auto editable = [&]() -> std::string& {
    if (!edited) bytes.assign(raw);
    edited = true;
    return bytes;
  };
  // Responses to a renamed command carry the name the client asked with.
  if (first && renamed_pending() && r.kind == imap::ResponseKind::Data && !r.name_text.empty()) {
    for (const auto& n : effects_->renamed) {
      if (!imap::iequals(r.name_text, n.rewrite->response_from)) continue;
      std::string& b = editable();
      const std::size_t at = offset_in(raw, r.name_text);
      if (at < b.size()) {
        b.replace(at, r.name_text.size(), n.rewrite->response_to);
        std::string replaced;
        if (policy::replace_text(b, true, true, n.rewrite->response_replace, replaced)) b = std::move(replaced);
      }
      break;
    }
  }
  if (v && v->replace) {
    const bool literals = r.kind == imap::ResponseKind::Data;
    for (const policy::Rule* rule : v->rules) {
      if (rule->actions.replace.empty()) continue;
      std::string replaced;
      if (policy::replace_text(edited ? std::string_view(bytes) : raw, literals, first, rule->actions.replace,
                               replaced)) {
        bytes = std::move(replaced);
        edited = true;
      }
    }
  }
  if (v && v->inject && first) inject(*v, true);
  response_queue() += edited ? std::string_view(bytes) : raw;
  if (v && v->inject && last) inject(*v, false);
}

}  // namespace imapscope::session
