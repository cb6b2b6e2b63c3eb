#include "proxy/session/session.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/describe.hpp"
#include "proxy/policy/rewrite.hpp"
#include "proxy/session/message_bytes.hpp"

namespace imapscope::session {
namespace {

// The answer to a command a limit refused; the server never sees it.
std::pair<imap::Status, std::string_view> refusal(imap::ErrorCode code) {
  switch (code) {
    case imap::ErrorCode::LineTooLong: return {imap::Status::Bad, "[TOOBIG] Command line too long"};
    case imap::ErrorCode::LiteralTooBig: return {imap::Status::Bad, "[TOOBIG] Literal too big"};
    case imap::ErrorCode::ListTooDeep: return {imap::Status::Bad, "Lists nested too deeply"};
    case imap::ErrorCode::TagTooLong: return {imap::Status::Bad, "Tag too long"};
    case imap::ErrorCode::TooManyPendingCommands: return {imap::Status::No, "[LIMIT] Too many commands in progress"};
    case imap::ErrorCode::LiteralSizeOverflow: break;
  }
  return {imap::Status::Bad, "Invalid command"};
}

}  // namespace

Session::Session(const SessionSettings& settings)
    : settings_(settings),
      state_(*settings.client_limits),
      identifier_(settings.signatures ? *settings.signatures : identify::builtin_signatures()) {
  if (settings.rules) rules_ = std::make_unique<policy::SessionRules>(*settings.rules);
}

bool Session::client_blocked() const {
  return commands_paused_ || client_blocked_by_proxy() || state_.transport_change_pending() ||
         state_.client_input() == imap::ClientInput::AwaitingServer;
}

void Session::client_tls_started() {
  settings_.client_leg.tls = true;
  client_tls_requested_ = false;
  state_.transport_changed();
}

void Session::client_compress_started() {
  settings_.client_leg.compressed = true;
  client_compress_requested_ = false;
  client_compress_offset_ = 0;
}

void Session::answer_compress(const imap::Command& c) {
  const ClientLegView& leg = settings_.client_leg;
  const bool deflate = c.args.size() == 1 && imap::iequals(c.args.front().text, "DEFLATE");
  if (!leg.compress_offered) {
    answer(c.tag, imap::Status::No, "[CANNOT] COMPRESS is not offered here");
  } else if (leg.compressed || client_compress_requested_) {
    answer(c.tag, imap::Status::No, "[COMPRESSIONACTIVE] DEFLATE is active already");
  } else if (!deflate) {
    answer(c.tag, imap::Status::Bad, "Only COMPRESS DEFLATE is supported");
  } else if (!state_.logged_in()) {
    answer(c.tag, imap::Status::No, "[CANNOT] COMPRESS is available after login");
  } else if (state_.pending().size() > 1 || server_in_message_ || responses_paused_) {
    // The switch needs a quiet moment: the OK must go out right now, in clear.
    answer(c.tag, imap::Status::No, "[INUSE] Other commands are still in progress");
  } else {
    answer(c.tag, imap::Status::Ok, "DEFLATE active");
    client_compress_requested_ = true;
    client_compress_offset_ = to_client_.size();
    // The tagged OK blocks both decoders until the transport changes: the server's
    // leg doesn't change, and the client's input waits on client_compress_requested_.
    state_.transport_changed();
  }
}

void Session::release_memory() {
  if (decoders_ && decoders_->commands.at_rest() && decoders_->responses.at_rest()) {
    client_offset_ = decoders_->commands.stream_offset();
    server_offset_ = decoders_->responses.stream_offset();
    decoders_.reset();
  } else if (decoders_) {
    decoders_->commands.release_memory();
    decoders_->responses.release_memory();
  }
  for (std::string* s : {&to_client_, &to_server_, &deferred_client_}) {
    if (s->empty()) std::string().swap(*s);
  }
  // Rule effects that hold nothing any more go whole (a paused direction queues into them).
  if (effects_ && effects_->holds_nothing() && !commands_paused_ && !responses_paused_) effects_.reset();
}

void Session::send_to_client(std::string_view line) {
  // Passed through, the client inflates the server's stream: a line of ours in
  // clear would break it (the relay puts its BYE in as a block of its own).
  if (observing()) return;
  if (observer_) observer_->proxy_to_client(line);
  if (server_in_message_ || responses_paused_) {
    deferred_client_ += line;
  } else {
    to_client_ += line;
  }
}

void Session::flush_deferred() {
  if (server_in_message_ || responses_paused_ || deferred_client_.empty()) return;
  to_client_ += deferred_client_;
  deferred_client_.clear();
}
void Session::answer(std::string_view tag, imap::Status status, std::string_view text) {
  std::string line;
  line.reserve(tag.size() + text.size() + 8);
  line.append(tag).append(" ").append(imap::status_name(status)).append(" ").append(text).append("\r\n");
  send_to_client(line);
  // As if the server had answered: the command leaves the pending table and the
  // client's wait (literal, STARTTLS...) is released.
  const auto outcome = state_.on_tagged(tag, status);
  if (observer_ && outcome.command) {
    observer_->command_done(tag, outcome.command->verb, outcome.command->uid, status, true);
  }
}

bool Session::answer_locally(const imap::Command& c) {
  if (observing() || c.kind != imap::CommandKind::Tagged || c.uid || c.tag.empty()) return false;
  const ClientLegView& leg = settings_.client_leg;
  switch (c.verb) {
    case imap::Verb::Starttls:
      // STARTTLS is the business of each leg: the server's leg was set up already.
      // RFC 9051 §6.2.1: valid only in the not-authenticated state; a switch after
      // login would protect nothing already sent (and invites injection).
      if (leg.tls) {
        answer(c.tag, imap::Status::Bad, "TLS is already active");
      } else if (state_.protocol_state() != imap::ProtocolState::NotAuthenticated) {
        answer(c.tag, imap::Status::Bad, "STARTTLS is only valid before login");
      } else if (!leg.starttls_available) {
        answer(c.tag, imap::Status::Bad, "STARTTLS is not available");
      } else {
        answer(c.tag, imap::Status::Ok, "Begin TLS negotiation now");
        client_tls_requested_ = true;
      }
      return true;
    case imap::Verb::Compress:
      // Each leg's own business, unless both legs can share one stream.
      if (pass_compress_through(c)) return false;
      answer_compress(c);
      return true;
    case imap::Verb::Login:
    case imap::Verb::Authenticate:
      // Answered here: the credentials never reach the server (nor its log).
      if (!leg.tls && leg.login_disabled_until_tls) {
        answer(c.tag, imap::Status::No, "[PRIVACYREQUIRED] Use STARTTLS before logging in");
        return true;
      }
      return false;
    default:
      return false;
  }
}

void Session::reject(const imap::Command& c) {
  if (observing()) return;  // the server has the command and answers it
  const auto [status, text] = refusal(*client_error_);
  const bool tag_usable = !c.tag.empty() && c.kind == imap::CommandKind::Tagged &&
                          c.tag.find_first_of("*+") == std::string_view::npos;
  if (tag_usable) {
    answer(c.tag, status, text);
  } else {
    send_to_client(std::string("* BAD ").append(text).append("\r\n"));
  }
}

void Session::feed_client(std::string_view& input) {
  while (!close_ && !client_blocked_by_proxy() && !commands_paused_) {
    const auto ev = commands().next(input);
    switch (ev.kind) {
      case imap::EventKind::NeedMore:
      case imap::EventKind::Blocked:
        return;
      case imap::EventKind::MessagePart: {
        if (observer_) observer_->client_bytes(commands().command(), ev.kind, ev.raw);
        // The head of a command with a literal: decide now whether and how it goes on.
        const bool first = !client_in_message_;
        client_in_message_ = true;
        if (first) {
          const imap::Command& c = commands().command();
          if (answer_locally(c)) {
            suppress_client_message_ = true;
          } else {
            command_verdict_ = judge_command(c, ev.raw);
            if (command_verdict_ && answer_by_rule(c, *command_verdict_)) suppress_client_message_ = true;
          }
          if (!suppress_client_message_) maybe_hold_login(c);
        }
        if (!suppress_client_message_) send_command_bytes(ev.raw, first, false);
        break;
      }
      case imap::EventKind::LiteralData:
      case imap::EventKind::Skipped:
        if (observer_) observer_->client_bytes(commands().command(), ev.kind, ev.raw);
        client_in_message_ = true;
        if (!suppress_client_message_ && !observing()) command_queue() += ev.raw;
        break;
      case imap::EventKind::Error:
        // A command refused by a limit never reaches the server; the client gets
        // the answer when the decoder has passed over the rest of it.
        client_in_message_ = true;
        suppress_client_message_ = true;
        client_error_ = ev.error.code;
        if (observer_) {
          observer_->protocol_error(true, ev.error.code);
          observer_->client_bytes(commands().command(), ev.kind, ev.raw);
        }
        if (!ev.error.recoverable) {
          send_to_client(std::string("* BYE ").append(imap::error_reason(ev.error.code)).append("\r\n"));
          close_ = CloseReason::ProtocolError;
        }
        break;
      case imap::EventKind::Message:
        if (observer_) observer_->client_bytes(commands().command(), ev.kind, ev.raw);
        on_client_message(ev.raw);
        client_in_message_ = false;
        command_verdict_ = nullptr;
        break;
    }
  }
}

void Session::on_client_message(std::string_view raw) {
  const imap::Command& c = commands().command();
  const bool first = !client_in_message_;
  const bool suppressed = suppress_client_message_;
  suppress_client_message_ = false;
  if (c.aborted) return;  // its head went out; the server refused the literal
  if (c.rejected) {
    if (client_error_) reject(c);
    client_error_.reset();
    return;
  }
  const bool tagged = c.kind == imap::CommandKind::Tagged;
  if (tagged) identifier_.on_command(c);
  if (observer_) {
    if (tagged) observer_->command(c);
    if (c.literal_bytes > 0) observer_->literal_bytes(true, c.literal_bytes);
    if (identifier_.revision() != identity_reported_) {
      identity_reported_ = identifier_.revision();
      observer_->client_identified(identifier_.info(), identifier_.settled());
    }
  }
  if (suppressed) return;  // answered when its head arrived
  if (first && tagged) {
    if (answer_locally(c)) return;
    command_verdict_ = judge_command(c, raw);
    if (command_verdict_ && answer_by_rule(c, *command_verdict_)) return;
    maybe_hold_login(c);
  }
  if (tagged) ++commands_forwarded_;
  watch_login(c);
  send_command_bytes(raw, first, true);
}

void Session::feed_server(std::string_view& input) {
  while (!close_ && !responses_paused_) {
    const auto ev = responses().next(input);
    switch (ev.kind) {
      case imap::EventKind::NeedMore:
      case imap::EventKind::Blocked:
        return;
      case imap::EventKind::MessagePart: {
        if (observer_) observer_->server_bytes(responses().response(), ev.kind, ev.raw);
        const bool first = !server_in_message_;
        if (first) response_verdict_ = judge_response(responses().response(), ev.raw);
        server_in_message_ = true;
        if (!drop_server_message_) send_response_bytes(ev.raw, first, false);
        break;
      }
      case imap::EventKind::LiteralData:
      case imap::EventKind::Skipped:
      case imap::EventKind::Error:
        // Inspection fails open: whatever the server sends reaches the client.
        if (observer_) {
          if (ev.kind == imap::EventKind::Error) observer_->protocol_error(false, ev.error.code);
          observer_->server_bytes(responses().response(), ev.kind, ev.raw);
        }
        server_in_message_ = true;
        if (!drop_server_message_ && !observing()) response_queue() += ev.raw;
        break;
      case imap::EventKind::Message:
        if (own_compress_answer(responses().response())) break;  // the proxy's own, not the client's
        if (observer_) observer_->server_bytes(responses().response(), ev.kind, ev.raw);
        forward_server_message(ev.raw);
        note_pass_through_answer(responses().response());
        if (login_) note_login_answer(responses().response());
        server_in_message_ = false;
        drop_server_message_ = false;
        response_verdict_ = nullptr;
        flush_deferred();
        maybe_compress_upstream();
        break;
    }
  }
}

void Session::forward_server_message(std::string_view raw) {
  const imap::Response& r = responses().response();
  const bool first = !server_in_message_;
  if (observer_) observe_response(r);
  if (r.kind == imap::ResponseKind::Tagged && renamed_pending()) {
    std::erase_if(effects_->renamed, [&](const Renamed& n) { return n.tag == r.tag; });
  }
  // What the decoder could not read is passed on as it came.
  if (r.rejected || r.malformed) {
    if (!drop_server_message_ && !observing()) response_queue() += raw;
    return;
  }
  if (first) response_verdict_ = judge_response(r, raw);
  if (drop_server_message_) return;
  send_response_bytes(raw, first, true);
}

void Session::observe_response(const imap::Response& r) {
  if (r.literal_bytes > 0) observer_->literal_bytes(false, r.literal_bytes);
  switch (r.kind) {
    case imap::ResponseKind::Tagged:
      if (r.matched) observer_->command_done(r.tag, r.command_verb, r.command_uid, r.status, false);
      break;
    case imap::ResponseKind::Continuation:
      if (r.continuation_for == imap::ContinuationFor::Idle) observer_->idle_started();
      break;
    case imap::ResponseKind::Status:
      if (r.status == imap::Status::Ok && state_.client_input() == imap::ClientInput::IdleDone) {
        observer_->idle_keepalive();
      }
      break;
    case imap::ResponseKind::Data:
      break;
  }
}

bool Session::rewrite_capability_lists(const imap::Response& r, std::string_view raw, std::string& bytes) {
  if (observing()) return false;
  const ClientLegView& leg = settings_.client_leg;
  const auto eol = line_ending(raw);
  if (r.kind == imap::ResponseKind::Data && r.name == imap::ResponseName::Capability && !r.args.empty()) {
    const std::size_t begin = offset_in(raw, r.args.front().text);
    note_server_capabilities(raw.substr(begin, raw.size() - eol.size() - begin));
  } else if (imap::iequals(r.code, "CAPABILITY")) {
    note_server_capabilities(r.code_args);
  }
  const bool offer_compress =
      leg.compress_offered && !leg.compressed && !client_compress_requested_ && state_.logged_in();
  auto edit = [&](std::string_view list) {
    auto rewritten = rewrite_capabilities(list, leg, offer_compress);
    if (response_verdict_ && response_verdict_->capabilities) {
      rewritten = policy::edit_capabilities(rewritten, response_verdict_->rules);
    }
    return rewritten;
  };
  if (r.kind == imap::ResponseKind::Data && r.name == imap::ResponseName::Capability && !r.args.empty()) {
    // capability-data = "CAPABILITY" *(SP capability) SP "IMAP4rev1" *(SP capability)
    const std::size_t begin = offset_in(raw, r.args.front().text);
    const auto list = raw.substr(begin, raw.size() - eol.size() - begin);
    const auto rewritten = edit(list);
    if (rewritten == list) return false;
    bytes.assign(raw.substr(0, begin)).append(rewritten).append(eol);
    return true;
  }
  if ((r.kind == imap::ResponseKind::Status || r.kind == imap::ResponseKind::Tagged) &&
      imap::iequals(r.code, "CAPABILITY")) {
    const std::size_t open = offset_in(raw, r.code) - 1;  // "["
    const std::size_t args_begin = offset_in(raw, r.code_args);
    const std::size_t args_end = args_begin + r.code_args.size();
    if (r.greeting && settings_.hide_greeting_capabilities) {
      // resp-text = ["[" resp-text-code "]" SP] text: drop the code and its space.
      std::size_t text_begin = raw.find(']', args_end);
      text_begin = text_begin == std::string_view::npos ? raw.size() - eol.size() : text_begin + 1;
      if (text_begin < raw.size() && raw[text_begin] == ' ') ++text_begin;
      bytes.assign(raw.substr(0, open)).append(raw.substr(text_begin));
      return true;
    }
    const auto rewritten = edit(r.code_args);
    if (rewritten == r.code_args) return false;
    bytes.assign(raw.substr(0, args_begin)).append(rewritten).append(raw.substr(args_end));
    return true;
  }
  return false;
}

}  // namespace imapscope::session
