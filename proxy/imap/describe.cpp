#include "proxy/imap/describe.hpp"

#include <cstdio>

namespace imapscope::imap {

std::string_view event_kind_name(EventKind kind) {
  switch (kind) {
    case EventKind::NeedMore: return "need_more";
    case EventKind::Blocked: return "blocked";
    case EventKind::MessagePart: return "part";
    case EventKind::LiteralData: return "literal";
    case EventKind::Message: return "message";
    case EventKind::Skipped: return "skipped";
    case EventKind::Error: return "error";
  }
  return "unknown";
}

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::LineTooLong: return "line_too_long";
    case ErrorCode::LiteralTooBig: return "literal_too_big";
    case ErrorCode::LiteralSizeOverflow: return "literal_size_overflow";
    case ErrorCode::ListTooDeep: return "list_too_deep";
    case ErrorCode::TagTooLong: return "tag_too_long";
    case ErrorCode::TooManyPendingCommands: return "too_many_pending_commands";
  }
  return "unknown";
}

std::string_view error_reason(ErrorCode code) {
  switch (code) {
    case ErrorCode::LineTooLong: return "line too long";
    case ErrorCode::LiteralTooBig: return "literal too big";
    case ErrorCode::LiteralSizeOverflow: return "literal size does not fit in 64 bits";
    case ErrorCode::ListTooDeep: return "lists nested too deeply";
    case ErrorCode::TagTooLong: return "tag too long";
    case ErrorCode::TooManyPendingCommands: return "too many commands without a response";
  }
  return "decode error";
}

namespace {
std::string escape(std::string_view bytes, bool quotes) {
  std::string out;
  out.reserve(bytes.size());
  for (unsigned char c : bytes) {
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '"': out += quotes ? "\\\"" : "\""; break;
      case '\\': out += quotes ? "\\\\" : "\\"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out.push_back(static_cast<char>(c));
        } else {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02X", c);
          out += hex;
        }
    }
  }
  return out;
}
}  // namespace

std::string escape_bytes(std::string_view bytes) { return escape(bytes, true); }
std::string escape_nonprintable(std::string_view bytes) { return escape(bytes, false); }

std::string describe_tokens(std::span<const Token> tokens) {
  std::string out;
  bool need_space = false;
  for (const auto& t : tokens) {
    if (t.kind == TokenKind::ListClose) {
      out += ')';
      need_space = true;
      continue;
    }
    if (need_space) out += ' ';
    switch (t.kind) {
      case TokenKind::Atom:
        out += escape_nonprintable(t.text);
        need_space = true;
        break;
      case TokenKind::Quoted:
        out += '"';
        out += escape_nonprintable(t.text);  // IMAP's escapes are kept as sent
        out += '"';
        need_space = true;
        break;
      case TokenKind::Literal:
        if (t.literal.binary) out += '~';
        out += '{' + std::to_string(t.literal.size) + (t.literal.synchronizing ? "}" : "+}");
        out += t.has_content ? '"' + escape_bytes(t.text) + '"' : std::string("<streamed>");
        need_space = true;
        break;
      case TokenKind::ListOpen:
        out += '(';
        need_space = false;
        break;
      case TokenKind::ListClose:
        break;
    }
  }
  return out;
}

namespace {
void flags(std::string& out, bool complete, bool rejected, bool malformed) {
  if (!complete) out += " partial";
  if (rejected) out += " rejected";
  if (malformed) out += " malformed";
}
}  // namespace

std::string describe_command(const Command& c) {
  std::string out(command_kind_name(c.kind));
  if (c.kind != CommandKind::Tagged) {
    out += " line=\"" + escape_bytes(c.line) + '"';
  } else {
    out += " tag=" + std::string(c.tag);
    if (c.uid) out += " uid";
    out += " verb=" + std::string(verb_name(c.verb));
    if (c.verb == Verb::Other) out += " name=" + std::string(c.name);
    if (!c.args.empty()) out += " args=[" + describe_tokens(c.args) + ']';
  }
  if (c.literal_bytes) out += " literal_bytes=" + std::to_string(c.literal_bytes);
  if (c.aborted) out += " aborted";
  flags(out, c.complete, c.rejected, c.malformed);
  return out;
}

std::string describe_response(const Response& r) {
  std::string out(response_kind_name(r.kind));
  switch (r.kind) {
    case ResponseKind::Continuation:
      out += " for=" + std::string(continuation_for_name(r.continuation_for));
      break;
    case ResponseKind::Tagged:
      out += " tag=" + std::string(r.tag) + ' ' + std::string(status_name(r.status));
      if (r.matched) {
        out += " command=";
        if (r.command_uid) out += "UID ";
        out += verb_name(r.command_verb);
      } else {
        out += " unmatched";
      }
      break;
    case ResponseKind::Status:
      out += ' ' + std::string(status_name(r.status));
      if (r.greeting) out += " greeting";
      break;
    case ResponseKind::Data:
      if (r.number) out += " number=" + std::to_string(*r.number);
      out += " name=" + std::string(r.name == ResponseName::Other ? r.name_text : response_name(r.name));
      if (!r.args.empty()) out += " args=[" + describe_tokens(r.args) + ']';
      break;
  }
  if (!r.code.empty()) {
    out += " code=" + std::string(r.code);
    if (!r.code_args.empty()) out += " code_args=\"" + escape_bytes(r.code_args) + '"';
  }
  if (r.kind != ResponseKind::Data) out += " text=\"" + escape_bytes(r.text) + '"';
  if (r.effect == SessionEffect::StartTls) out += " effect=starttls";
  if (r.effect == SessionEffect::CompressDeflate) out += " effect=compress";
  if (r.cancels_literal) out += " cancels_literal";
  if (r.literal_bytes) out += " literal_bytes=" + std::to_string(r.literal_bytes);
  flags(out, r.complete, r.rejected, r.malformed);
  return out;
}

}  // namespace imapscope::imap
