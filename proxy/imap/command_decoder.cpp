#include "proxy/imap/command_decoder.hpp"

#include <algorithm>
#include <cassert>

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/describe.hpp"

namespace imapscope::imap {

std::string_view command_kind_name(CommandKind kind) {
  switch (kind) {
    case CommandKind::Tagged: return "command";
    case CommandKind::IdleDone: return "idle_done";
    case CommandKind::SaslResponse: return "sasl_response";
  }
  return "unknown";
}

CommandDecoder::CommandDecoder(SessionState& state, const DecoderLimits& limits, std::uint64_t offset)
    : state_(state), limits_(limits), assembler_(limits_, offset) {}

LinePartInfo CommandDecoder::on_line_part(std::string_view message, std::size_t begin, std::size_t end,
                                          Tokenizer& tokenizer, std::vector<Token>& tokens) {
  LinePartInfo info;
  if (mode_ != LineMode::Commands) return info;  // DONE and SASL lines carry no literals
  const auto result = tokenizer.tokenize(message, begin, end, tokens);
  malformed_ = malformed_ || result.malformed;
  info.literal = result.literal;
  if (info.literal && !info.literal->size_overflow && state_.protocol_state() == ProtocolState::NotAuthenticated &&
      info.literal->size > limits_.max_literal_before_login) {
    info.error = ErrorCode::LiteralTooBig;  // refused as a literal over max_literal_size is
  } else if (result.list_too_deep) {
    info.error = ErrorCode::ListTooDeep;
  } else if (begin == 0 && !tokens.empty()) {
    if (tokens[0].length > limits_.max_tag_length) {
      info.error = ErrorCode::TagTooLong;
    } else if (state_.pending().size() >= limits_.max_pending_commands) {
      info.error = ErrorCode::TooManyPendingCommands;
    }
  }
  return info;
}

void CommandDecoder::read_head(std::span<const Token> tokens) {
  // command = tag SP (command-any / command-auth / command-nonauth / command-select) CRLF
  // tag = 1*<any ASTRING-CHAR except "+">          (RFC 9051 §9)
  command_.kind = CommandKind::Tagged;
  command_.tag = {};
  command_.name = {};
  command_.verb = Verb::Other;
  command_.uid = false;
  std::size_t i = 0;
  bool malformed = malformed_;
  tag_ok_ = false;
  if (i < tokens.size() && tokens[i].kind == TokenKind::Atom) {
    command_.tag = tokens[i++].text;
    tag_ok_ = std::all_of(command_.tag.begin(), command_.tag.end(), is_tag_char);
    malformed = malformed || !tag_ok_;
  } else {
    malformed = true;
  }
  if (i < tokens.size() && tokens[i].kind == TokenKind::Atom) {
    command_.name = tokens[i++].text;
    // uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)
    if (iequals(command_.name, "UID") && i < tokens.size() && tokens[i].kind == TokenKind::Atom) {
      command_.uid = true;
      command_.name = tokens[i++].text;
    }
    command_.verb = verb_from_name(command_.name);
  } else {
    malformed = true;
  }
  command_.args = tokens.subspan(i);
  command_.malformed = malformed;
}

void CommandDecoder::register_pending() {
  // Whatever else is wrong with it, a command with a tag gets a tagged answer.
  if (registered_ || !tag_ok_) return;
  [[maybe_unused]] const bool added = state_.add_pending(command_.tag, command_.verb, command_.uid);
  assert(added && "on_line_part checks the pending table's room");
  registered_ = true;
}

void CommandDecoder::after_complete_command() {
  if (!registered_ || command_.uid) return;
  switch (command_.verb) {
    case Verb::Idle:
      state_.await_server(WaitReason::Idle, command_.tag);
      break;
    case Verb::Authenticate:
      state_.await_server(WaitReason::Sasl, command_.tag);
      break;
    case Verb::Starttls:
    case Verb::Compress:
      // Nothing the client sends before the tagged result may be read: after STARTTLS
      // it is plaintext that must never pass (the STARTTLS injection), after COMPRESS
      // it is compressed.
      state_.await_server(WaitReason::TaggedResult, command_.tag);
      break;
    default:
      break;
  }
}

Event CommandDecoder::on_error(const MessageAssembler::Output& out) {
  command_.rejected = true;
  command_.complete = false;
  command_.args = {};
  if (mode_ == LineMode::Commands) {
    // Read the tag and name from the head, so the relay can answer with a tagged BAD.
    tokenize_head(assembler_.rejected_head(), limits_.max_list_depth, head_tokens_);
    read_head(head_tokens_);
    command_.args = {};
  }
  const bool recoverable = out.error != ErrorCode::LiteralSizeOverflow;
  return Event{EventKind::Error, out.raw,
               DecodeError{out.error, assembler_.message_offset(), error_reason(out.error), recoverable}};
}

Event CommandDecoder::next(std::string_view& input) {
  if (state_.transport_change_pending()) return Event{EventKind::Blocked, {}, {}};
  switch (state_.client_input()) {
    case ClientInput::AwaitingServer:
      return Event{EventKind::Blocked, {}, {}};
    case ClientInput::LiteralCancelled:
      // The server refused the command before its synchronising literal (tagged NO or
      // BAD instead of "+"): the client will not send the payload.
      state_.set_client_input(ClientInput::Commands);
      assembler_.abandon_message();
      command_.aborted = true;
      command_.complete = true;
      return Event{EventKind::Message, {}, {}};
    case ClientInput::LiteralPayload:
      state_.set_client_input(ClientInput::Commands);
      break;
    case ClientInput::IdleDone:
    case ClientInput::SaslResponse:
    case ClientInput::Commands:
      break;
  }
  if (assembler_.between_messages()) {
    const auto input_mode = state_.client_input();
    mode_ = input_mode == ClientInput::IdleDone       ? LineMode::IdleDone
            : input_mode == ClientInput::SaslResponse ? LineMode::SaslResponse
                                                      : LineMode::Commands;
    command_ = Command{};
    registered_ = false;
    malformed_ = false;
  }

  const auto out = assembler_.next(input, *this);
  switch (out.step) {
    case MessageAssembler::Step::NeedMore:
      return Event{};
    case MessageAssembler::Step::LiteralData:
      return Event{EventKind::LiteralData, out.raw, {}};
    case MessageAssembler::Step::Skipped:
      return Event{EventKind::Skipped, out.raw, {}};
    case MessageAssembler::Step::Error:
      return on_error(out);
    case MessageAssembler::Step::RejectedEnd:
      command_.rejected = true;
      command_.complete = true;
      if (mode_ == LineMode::IdleDone) state_.set_client_input(ClientInput::Commands);
      if (mode_ == LineMode::SaslResponse) state_.await_server_again(WaitReason::Sasl);
      return Event{EventKind::Message, out.raw, {}};
    case MessageAssembler::Step::Part: {
      const auto& tokens = assembler_.tokens();
      read_head(tokens);
      command_.complete = false;
      command_.literal_bytes = assembler_.literal_bytes();
      register_pending();
      if (!tokens.empty() && tokens.back().kind == TokenKind::Literal && tokens.back().literal.synchronizing) {
        state_.await_server(WaitReason::Literal, command_.tag);
      }
      return Event{EventKind::MessagePart, out.raw, {}};
    }
    case MessageAssembler::Step::Complete:
      break;
  }

  command_.complete = true;
  command_.literal_bytes = assembler_.literal_bytes();
  if (mode_ == LineMode::Commands) {
    read_head(assembler_.tokens());
    register_pending();
    after_complete_command();
    return Event{EventKind::Message, out.raw, {}};
  }
  auto line = assembler_.message();
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  command_.line = line;
  if (mode_ == LineMode::IdleDone) {
    // Any line ends IDLE; only "DONE" is right (Dovecot answers others "BAD Expected DONE").
    command_.kind = CommandKind::IdleDone;
    command_.malformed = !iequals(line, "DONE");
    state_.set_client_input(ClientInput::Commands);
  } else {
    command_.kind = CommandKind::SaslResponse;
    state_.await_server_again(WaitReason::Sasl);
  }
  return Event{EventKind::Message, out.raw, {}};
}

}  // namespace imapscope::imap
