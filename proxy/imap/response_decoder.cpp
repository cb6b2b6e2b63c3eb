#include "proxy/imap/response_decoder.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/describe.hpp"

namespace imapscope::imap {

std::string_view response_kind_name(ResponseKind kind) {
  switch (kind) {
    case ResponseKind::Continuation: return "continuation";
    case ResponseKind::Status: return "status";
    case ResponseKind::Data: return "data";
    case ResponseKind::Tagged: return "tagged";
  }
  return "unknown";
}

namespace {

Status status_from(std::string_view word) {
  // resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
  // resp-cond-auth  = ("OK" / "PREAUTH") SP resp-text;  resp-cond-bye = "BYE" SP resp-text
  if (iequals(word, "OK")) return Status::Ok;
  if (iequals(word, "NO")) return Status::No;
  if (iequals(word, "BAD")) return Status::Bad;
  if (iequals(word, "BYE")) return Status::Bye;
  if (iequals(word, "PREAUTH")) return Status::Preauth;
  return Status::None;
}

ResponseName name_of(Status status) {
  switch (status) {
    case Status::Ok: return ResponseName::Ok;
    case Status::No: return ResponseName::No;
    case Status::Bad: return ResponseName::Bad;
    case Status::Bye: return ResponseName::Bye;
    case Status::Preauth: return ResponseName::Preauth;
    case Status::None: break;
  }
  return ResponseName::Other;
}

std::size_t word_end(std::string_view line, std::size_t i) {
  while (i < line.size() && line[i] != ' ') ++i;
  return i;
}

}  // namespace

ResponseDecoder::ResponseDecoder(SessionState& state, const DecoderLimits& limits, std::uint64_t offset)
    : state_(state), limits_(limits), assembler_(limits_, offset) {}

void ResponseDecoder::classify(std::string_view line) {
  auto span = [](std::size_t begin, std::size_t end) {
    return Span{static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(end - begin)};
  };
  text_parts_ = TextLine{};
  text_line_ = false;
  if (!line.empty() && line[0] == '+') {
    response_.kind = ResponseKind::Continuation;
    text_line_ = true;
    const std::size_t t = (line.size() > 1 && line[1] == ' ') ? 2 : 1;
    text_parts_.text = span(t, line.size());
    return;
  }
  const std::size_t e0 = word_end(line, 0);
  const std::size_t s1 = std::min(e0 + 1, line.size());
  const std::size_t e1 = word_end(line, s1);
  const Status status = status_from(line.substr(s1, e1 - s1));
  const bool untagged = line.substr(0, e0) == "*";
  if (status == Status::None || (!untagged && (status == Status::Bye || status == Status::Preauth)) || e0 == 0) {
    response_.kind = ResponseKind::Data;  // read from its tokens
    malformed_ = malformed_ || !untagged;
    return;
  }
  response_.kind = untagged ? ResponseKind::Status : ResponseKind::Tagged;
  response_.status = status;
  text_line_ = true;
  if (!untagged) text_parts_.tag = span(0, e0);
  text_parts_.name = span(s1, e1);
  // resp-text = ["[" resp-text-code "]" SP] [text]
  std::size_t i = e1;
  if (i < line.size() && line[i] == ' ') ++i;
  if (i < line.size() && line[i] == '[') {
    const std::size_t close = line.find(']', i + 1);
    const std::size_t inner_end = close == std::string_view::npos ? line.size() : close;
    const std::size_t code_end = std::min(word_end(line, i + 1), inner_end);
    text_parts_.code = span(i + 1, code_end);
    text_parts_.code_args = span(std::min(code_end + 1, inner_end), inner_end);
    if (close == std::string_view::npos) {
      malformed_ = true;
      i = line.size();
    } else {
      i = close + 1;
      if (i < line.size() && line[i] == ' ') ++i;
    }
  }
  text_parts_.text = span(i, line.size());
}

LinePartInfo ResponseDecoder::on_line_part(std::string_view message, std::size_t begin, std::size_t end,
                                           Tokenizer& tokenizer, std::vector<Token>& tokens) {
  LinePartInfo info;
  if (begin == 0) classify(message.substr(0, end));
  if (text_line_) return info;  // "{5}" at the end of a status line is text, not a literal
  const auto result = tokenizer.tokenize(message, begin, end, tokens);
  malformed_ = malformed_ || result.malformed;
  info.literal = result.literal;
  if (result.list_too_deep) info.error = ErrorCode::ListTooDeep;
  return info;
}

void ResponseDecoder::read_data_head(std::span<const Token> tokens) {
  // response-data = "*" SP (resp-cond-state / resp-cond-bye / mailbox-data /
  //                 message-data / capability-data / enable-data) CRLF
  // message-data = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att))
  std::size_t i = 1;  // after "*"
  if (i < tokens.size() && tokens[i].kind == TokenKind::Atom) {
    if (auto n = parse_number(tokens[i].text)) {
      response_.number = n;
      ++i;
    }
  }
  if (i < tokens.size() && tokens[i].kind == TokenKind::Atom) {
    response_.name_text = tokens[i].text;
    response_.name = response_name_from(tokens[i].text);
    ++i;
  } else {
    malformed_ = true;
  }
  response_.args = tokens.subspan(std::min(i, tokens.size()));
  response_.malformed = malformed_;
}

void ResponseDecoder::resolve_text_line(std::string_view message) {
  auto view = [&](Span s) { return message.substr(std::min<std::size_t>(s.offset, message.size()), s.length); };
  response_.tag = view(text_parts_.tag);
  response_.name_text = view(text_parts_.name);
  response_.name = name_of(response_.status);
  response_.code = view(text_parts_.code);
  response_.code_args = view(text_parts_.code_args);
  response_.text = view(text_parts_.text);
  response_.malformed = malformed_;
}

void ResponseDecoder::apply_to_state() {
  const bool first = state_.on_server_message();
  switch (response_.kind) {
    case ResponseKind::Continuation:
      response_.continuation_for = state_.on_continuation();
      break;
    case ResponseKind::Status:
      response_.greeting = first;
      state_.on_untagged_status(response_.status, first);
      break;
    case ResponseKind::Tagged: {
      auto outcome = state_.on_tagged(response_.tag, response_.status);
      if (outcome.command) {
        response_.matched = true;
        response_.command_verb = outcome.command->verb;
        response_.command_uid = outcome.command->uid;
      }
      response_.effect = outcome.effect;
      response_.cancels_literal = outcome.cancels_literal;
      break;
    }
    case ResponseKind::Data:
      break;
  }
}

Event ResponseDecoder::on_error(const MessageAssembler::Output& out) {
  // Everything is read again from the kept head: views from an earlier part of the
  // message point into the assembler's buffer, which has grown (moved) since, and a
  // head without a name must not leave the old one behind (found by fuzzing).
  response_ = Response{};
  response_.rejected = true;
  const auto head = assembler_.rejected_head();
  auto end = std::min(head.find('\n'), head.size());
  if (end > 0 && head[end - 1] == '\r') --end;
  classify(head.substr(0, end));
  if (text_line_) {
    resolve_text_line(head);
  } else {
    tokenize_head(head, limits_.max_list_depth, head_tokens_);
    read_data_head(head_tokens_);
    response_.args = {};
  }
  const bool recoverable = out.error != ErrorCode::LiteralSizeOverflow;
  return Event{EventKind::Error, out.raw,
               DecodeError{out.error, assembler_.message_offset(), error_reason(out.error), recoverable}};
}

Event ResponseDecoder::next(std::string_view& input) {
  if (state_.transport_change_pending()) return Event{EventKind::Blocked, {}, {}};
  if (assembler_.between_messages()) {
    response_ = Response{};
    malformed_ = false;
    text_line_ = false;
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
      response_.complete = true;
      apply_to_state();  // a tagged result still completes its command
      return Event{EventKind::Message, out.raw, {}};
    case MessageAssembler::Step::Part:
      read_data_head(assembler_.tokens());
      response_.literal_bytes = assembler_.literal_bytes();
      return Event{EventKind::MessagePart, out.raw, {}};
    case MessageAssembler::Step::Complete:
      break;
  }
  if (text_line_) {
    resolve_text_line(assembler_.message());
  } else {
    read_data_head(assembler_.tokens());
  }
  response_.complete = true;
  response_.literal_bytes = assembler_.literal_bytes();
  apply_to_state();
  return Event{EventKind::Message, out.raw, {}};
}

}  // namespace imapscope::imap
