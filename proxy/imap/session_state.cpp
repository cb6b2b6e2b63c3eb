#include "proxy/imap/session_state.hpp"

#include <algorithm>

namespace imapscope::imap {

std::string_view protocol_state_name(ProtocolState s) {
  switch (s) {
    case ProtocolState::NotAuthenticated: return "not_authenticated";
    case ProtocolState::Authenticated: return "authenticated";
    case ProtocolState::Selected: return "selected";
    case ProtocolState::Logout: return "logout";
  }
  return "unknown";
}

std::string_view continuation_for_name(ContinuationFor c) {
  switch (c) {
    case ContinuationFor::Literal: return "literal";
    case ContinuationFor::Idle: return "idle";
    case ContinuationFor::Sasl: return "sasl";
    case ContinuationFor::Unexpected: return "unexpected";
  }
  return "unknown";
}

std::string_view status_name(Status s) {
  switch (s) {
    case Status::None: return "none";
    case Status::Ok: return "OK";
    case Status::No: return "NO";
    case Status::Bad: return "BAD";
    case Status::Bye: return "BYE";
    case Status::Preauth: return "PREAUTH";
  }
  return "unknown";
}

bool SessionState::add_pending(std::string_view tag, Verb verb, bool uid) {
  if (pending_.size() >= max_pending_) return false;
  pending_.push_back(PendingCommand{std::string(tag), verb, uid});
  return true;
}

void SessionState::await_server(WaitReason reason, std::string_view tag) {
  input_ = ClientInput::AwaitingServer;
  wait_reason_ = reason;
  wait_tag_.assign(tag);
}

void SessionState::await_server_again(WaitReason reason) {
  input_ = ClientInput::AwaitingServer;
  wait_reason_ = reason;
}

ContinuationFor SessionState::on_continuation() {
  if (input_ != ClientInput::AwaitingServer) return ContinuationFor::Unexpected;
  switch (wait_reason_) {
    case WaitReason::Literal:
      input_ = ClientInput::LiteralPayload;
      return ContinuationFor::Literal;
    case WaitReason::Idle:
      input_ = ClientInput::IdleDone;
      return ContinuationFor::Idle;
    case WaitReason::Sasl:
      input_ = ClientInput::SaslResponse;
      return ContinuationFor::Sasl;
    case WaitReason::TaggedResult:
      break;
  }
  return ContinuationFor::Unexpected;
}

bool SessionState::on_server_message() {
  const bool first = !greeting_seen_;
  greeting_seen_ = true;
  return first;
}

void SessionState::on_untagged_status(Status status, bool greeting) {
  if (greeting && status == Status::Preauth) protocol_ = ProtocolState::Authenticated;
  if (status == Status::Bye) protocol_ = ProtocolState::Logout;
}

SessionState::TaggedOutcome SessionState::on_tagged(std::string_view tag, Status status) {
  TaggedOutcome outcome;
  auto it = std::find_if(pending_.begin(), pending_.end(), [&](const auto& p) { return p.tag == tag; });
  if (it != pending_.end()) {
    outcome.command = std::move(*it);
    pending_.erase(it);
    apply_result(*outcome.command, status, outcome);
  }
  if (tag == wait_tag_) {
    if (input_ == ClientInput::AwaitingServer && wait_reason_ == WaitReason::Literal) {
      input_ = ClientInput::LiteralCancelled;
      outcome.cancels_literal = true;
    } else if (input_ == ClientInput::AwaitingServer || input_ == ClientInput::IdleDone ||
               input_ == ClientInput::SaslResponse) {
      // The server ended IDLE or the SASL exchange itself; the client's next line
      // is a command again.
      input_ = ClientInput::Commands;
    }
  }
  return outcome;
}

void SessionState::apply_result(const PendingCommand& command, Status status, TaggedOutcome& outcome) {
  if (status == Status::No && (command.verb == Verb::Select || command.verb == Verb::Examine)) {
    // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
    if (protocol_ == ProtocolState::Selected) protocol_ = ProtocolState::Authenticated;
    return;
  }
  if (status != Status::Ok) return;
  switch (command.verb) {
    case Verb::Login:
    case Verb::Authenticate:
      protocol_ = ProtocolState::Authenticated;
      break;
    case Verb::Select:
    case Verb::Examine:
      protocol_ = ProtocolState::Selected;
      break;
    case Verb::Close:
    case Verb::Unselect:
      protocol_ = ProtocolState::Authenticated;
      break;
    case Verb::Logout:
      protocol_ = ProtocolState::Logout;
      break;
    case Verb::Unauthenticate:
      protocol_ = ProtocolState::NotAuthenticated;
      break;
    case Verb::Starttls:
      outcome.effect = SessionEffect::StartTls;
      transport_change_pending_ = true;
      break;
    case Verb::Compress:
      outcome.effect = SessionEffect::CompressDeflate;
      transport_change_pending_ = true;
      break;
    default:
      break;
  }
}

}  // namespace imapscope::imap
