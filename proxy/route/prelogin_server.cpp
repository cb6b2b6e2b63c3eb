#include "proxy/route/prelogin_server.hpp"

#include <algorithm>
#include <utility>

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/tokenizer.hpp"
#include "proxy/imap/verbs.hpp"
#include "proxy/route/command_tokens.hpp"
#include "proxy/util/base64.hpp"

namespace imapscope::route {

namespace {

// Pre-login commands take flat lists (ID) at most.
constexpr unsigned kMaxListDepth = 4;
constexpr std::size_t kMaxTagLength = 256;
// Enough of a dropped line's end to recognise a literal header ("~{" 20 digits "+}",
// and sizes past 64 bits, which can't be skipped).
constexpr std::size_t kTailKept = 64;

constexpr std::string_view kLiteralContinuation = "+ Ready for literal data.\r\n";
constexpr std::string_view kUntaggedBad = "* BAD Error in IMAP command received by server.\r\n";

// tag = 1*<any ASTRING-CHAR except "+">   (RFC 9051 §9)
bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagLength) return false;
  return std::all_of(tag.begin(), tag.end(), [](char c) { return imap::is_tag_char(c); });
}

void tagged(std::string& out, std::string_view tag, std::string_view text) {
  out.append(tag).append(" ").append(text).append("\r\n");
}

// The commands this server answers or takes; every other known command needs a login.
bool prelogin_verb(imap::Verb verb) {
  using imap::Verb;
  return verb == Verb::Capability || verb == Verb::Noop || verb == Verb::Logout || verb == Verb::Id ||
         verb == Verb::Starttls || verb == Verb::Login || verb == Verb::Authenticate;
}

// The answer to a command this server doesn't take.
std::string_view refusal_text(imap::Verb verb, std::string_view name) {
  if (verb == imap::Verb::Other && !imap::iequals(name, "UID")) return "BAD Unknown command.";
  return "BAD Please log in first.";
}

// The first two words of a command's first line: its tag and name.
std::pair<std::string_view, std::string_view> head_words(std::string_view bytes) {
  const auto line_end = bytes.find_first_of("\r\n");
  const std::string_view line = bytes.substr(0, line_end);
  const auto sp = line.find(' ');
  if (sp == std::string_view::npos) return {line, {}};
  std::string_view rest = line.substr(sp + 1);
  return {line.substr(0, sp), rest.substr(0, rest.find(' '))};
}

bool is_string(const imap::Token& token) {
  return token.kind == imap::TokenKind::Quoted || token.kind == imap::TokenKind::Literal;
}

}  // namespace

PreLoginServer::PreLoginServer(PreLoginSettings settings) : settings_(std::move(settings)) {}

std::string PreLoginServer::greeting() const {
  return "* OK [CAPABILITY " + settings_.capabilities + "] IMAP proxy ready.\r\n";
}

LoginAttempt PreLoginServer::take_login() {
  if (!login_) return {};
  LoginAttempt attempt = std::move(*login_);
  login_.reset();
  return attempt;
}

void PreLoginServer::resume() {
  login_.reset();
  waiting_ = false;
}

void PreLoginServer::feed(std::string_view& in, std::string& out) {
  while (!waiting_ && !closed_ && !in.empty()) {
    if (input_ == Input::Literal) {
      if (in.size() < literal_size_) return;
      command_.append(in.substr(0, literal_size_));
      in.remove_prefix(literal_size_);
      input_ = Input::Command;
      continue;
    }
    if (input_ == Input::Skip) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(literal_size_, in.size()));
      in.remove_prefix(n);
      literal_size_ -= n;
      if (literal_size_ == 0) input_ = Input::Discard;
      continue;
    }
    // Bytes before scanned_ were searched by the last call: a line trickling in a byte
    // at a time costs its length, not its square.
    if (scanned_ > in.size()) scanned_ = 0;
    const auto lf = in.find('\n', scanned_);
    scanned_ = 0;
    if (input_ == Input::Discard) {
      const std::size_t take = lf == std::string_view::npos ? in.size() : lf;
      if (discard_literals_) {
        const std::string_view chunk = in.substr(0, take);
        discard_tail_.append(chunk.substr(chunk.size() - std::min(chunk.size(), kTailKept)));
        if (discard_tail_.size() > kTailKept) discard_tail_.erase(0, discard_tail_.size() - kTailKept);
      }
      if (lf == std::string_view::npos) {
        in.remove_prefix(in.size());
        return;
      }
      in.remove_prefix(lf + 1);
      on_discarded_line(out);
      continue;
    }
    if (lf == std::string_view::npos) {
      // A line part may hold kMaxLine bytes, and a CR before its LF.
      if (in.size() <= kMaxLine + 1) {
        scanned_ = in.size();
        return;
      }
      on_line_too_long(in, out);
      continue;
    }
    std::string_view line = in.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kMaxLine) {
      on_line_too_long(line, out);  // the Discard state then takes the line
      continue;
    }
    in.remove_prefix(lf + 1);
    if (input_ == Input::SaslResponse) {
      on_sasl_line(line, out);
    } else {
      on_command_line(line, out);
    }
  }
}

void PreLoginServer::reset_command() {
  command_.clear();
  if (command_.capacity() > 4096) command_.shrink_to_fit();
  step_ends_.clear();
  responses_.clear();
  sasl_tag_.clear();
  literal_size_ = 0;
  input_ = Input::Command;
}

std::string PreLoginServer::current_tag(std::string_view start) const {
  const std::string_view tag = head_words(command_.empty() ? start : std::string_view(command_)).first;
  return valid_tag(tag) ? std::string(tag) : "*";
}

void PreLoginServer::on_line_too_long(std::string_view start, std::string& out) {
  const bool command_line = input_ == Input::Command;
  tagged(out, current_tag(start), "BAD Command line too long.");
  reset_command();
  input_ = Input::Discard;
  discard_literals_ = command_line;
  discard_tail_.clear();
}

// A command was answered "BAD" before its end: its line part `part` (already taken) may
// announce a literal, which decides where the dropped command ends.
void PreLoginServer::drop_command(std::string_view part, std::string_view text, std::string& out) {
  tagged(out, current_tag(part), text);
  reset_command();
  after_dropped_line(part, true, out);
}

void PreLoginServer::on_discarded_line(std::string& out) {
  std::string_view end = discard_tail_;
  if (!end.empty() && end.back() == '\r') end.remove_suffix(1);
  after_dropped_line(end, discard_literals_, out);
  discard_tail_.clear();
}

// The end of a dropped command's line: a synchronising literal it announces won't come
// (the client has our BAD instead of "+"), a LITERAL+ comes and is skipped, and the
// line after it belongs to the dropped command too.
void PreLoginServer::after_dropped_line(std::string_view line_end, bool command_line, std::string& out) {
  const auto literal = command_line ? imap::parse_trailing_literal(line_end) : std::nullopt;
  input_ = Input::Command;
  if (!literal || literal->header.synchronizing) return;
  if (literal->header.size_overflow) {
    // Its end can't be found: nothing after it can be read as commands.
    out += "* BYE Literal too big.\r\n";
    closed_ = true;
    return;
  }
  literal_size_ = literal->header.size;
  input_ = Input::Skip;
  discard_literals_ = true;  // the rest of the command line after the payload follows
}

void PreLoginServer::on_command_line(std::string_view part, std::string& out) {
  if (command_.empty() && part.empty()) return;  // a stray blank line between commands
  if (command_.size() + part.size() + 2 > kMaxCommand) {
    drop_command(part, "BAD Command too long.", out);
    return;
  }
  command_.append(part).append("\r\n");
  const auto literal = imap::parse_trailing_literal(part);
  if (!literal) {
    execute(out);
    return;
  }
  const auto& header = literal->header;
  if (header.size_overflow || header.size > kMaxLine || command_.size() + header.size > kMaxCommand) {
    drop_command(part, "BAD Literal too big.", out);
    return;
  }
  if (header.synchronizing) {
    // Only LOGIN and ID take strings here; anything else is refused before the client
    // sends a payload nobody will read.
    const auto [tag, name] = head_words(command_);
    const auto verb = imap::verb_from_name(name);
    if (!valid_tag(tag)) {
      out += kUntaggedBad;
      reset_command();
      return;
    }
    if (verb != imap::Verb::Login && verb != imap::Verb::Id) {
      tagged(out, tag, prelogin_verb(verb) ? "BAD Invalid arguments." : refusal_text(verb, name));
      reset_command();
      return;
    }
    out += kLiteralContinuation;
    end_step();
  }
  literal_size_ = header.size;
  input_ = Input::Literal;
}

void PreLoginServer::execute(std::string& out) {
  const CommandTokens parsed = tokenize_command(command_, kMaxListDepth);
  const auto& tokens = parsed.tokens;
  if (tokens.empty() || tokens[0].kind != imap::TokenKind::Atom || !valid_tag(tokens[0].text)) {
    out += kUntaggedBad;
    reset_command();
    return;
  }
  const std::string tag(tokens[0].text);
  if (tokens.size() < 2 || tokens[1].kind != imap::TokenKind::Atom) {
    tagged(out, tag, "BAD Unknown command.");
    reset_command();
    return;
  }
  const std::string_view name = tokens[1].text;
  const auto verb = imap::verb_from_name(name);
  const std::span<const imap::Token> args = std::span(tokens).subspan(2);
  if (!prelogin_verb(verb)) {
    tagged(out, tag, refusal_text(verb, name));
  } else if (parsed.malformed) {
    tagged(out, tag, "BAD Invalid arguments.");
  } else {
    switch (verb) {
      case imap::Verb::Capability:
        if (!args.empty()) {
          tagged(out, tag, "BAD Invalid arguments.");
          break;
        }
        out.append("* CAPABILITY ").append(settings_.capabilities).append("\r\n");
        tagged(out, tag, "OK Pre-login capabilities listed, post-login capabilities have more.");
        break;
      case imap::Verb::Noop:
        tagged(out, tag, args.empty() ? "OK NOOP completed." : "BAD Invalid arguments.");
        break;
      case imap::Verb::Logout:
        if (!args.empty()) {
          tagged(out, tag, "BAD Invalid arguments.");
          break;
        }
        out += "* BYE Logging out\r\n";
        tagged(out, tag, "OK Logout completed.");
        closed_ = true;
        break;
      case imap::Verb::Starttls:
        tagged(out, tag, "BAD STARTTLS is not available.");
        break;
      case imap::Verb::Id:
        answer_id(tag, args, out);
        break;
      case imap::Verb::Login:
        answer_login(tag, args, out);
        return;  // it resets the command itself (its bytes become the login's steps)
      case imap::Verb::Authenticate:
        start_authenticate(tag, args, out);
        return;  // the command goes on with the SASL responses
      default:
        break;
    }
  }
  reset_command();
}

// id = "ID" SP id-params-list
// id-params-list = "(" *(string SP nstring) ")" / nil     (RFC 2971 §4)
void PreLoginServer::answer_id(const std::string& tag, std::span<const imap::Token> args, std::string& out) {
  bool valid = false;
  if (args.size() == 1 && args[0].is_nil()) {
    client_id_ = "NIL";
    valid = true;
  } else if (args.size() >= 2 && args.front().kind == imap::TokenKind::ListOpen &&
             args.back().kind == imap::TokenKind::ListClose && args.size() % 2 == 0) {
    valid = true;
    for (std::size_t i = 1; i + 1 < args.size(); i += 2) {
      const auto& key = args[i];
      const auto& value = args[i + 1];
      if (!is_string(key) || !(is_string(value) || value.is_nil())) valid = false;
    }
    if (valid) {
      const std::size_t begin = args.front().offset;
      client_id_ = command_.substr(begin, args.back().offset + 1 - begin);
    }
  }
  if (!valid) {
    tagged(out, tag, "BAD Invalid arguments.");
    return;
  }
  out += "* ID (\"name\" \"imapscope\")\r\n";
  tagged(out, tag, "OK ID completed.");
}

// login = "LOGIN" SP userid SP password; userid = astring; password = astring
void PreLoginServer::answer_login(const std::string& tag, std::span<const imap::Token> args, std::string& out) {
  DecodedCredentials decoded;
  decoded.error = CredentialsError::Malformed;
  if (args.size() == 2) decoded = login_command_credentials(args[0], args[1]);
  if (!decoded.ok()) {
    tagged(out, tag, "BAD Invalid arguments.");
    reset_command();
    return;
  }
  LoginAttempt attempt;
  attempt.tag = tag;
  attempt.mechanism = "LOGIN";
  attempt.method = std::move(decoded.credentials.method);
  attempt.user = std::move(decoded.credentials.user);
  attempt.secret = std::move(decoded.credentials.secret);
  complete_login(std::move(attempt));
}

// authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp] *(CRLF base64)
// initial-resp = (base64 / "=")      (RFC 9051 §9, SASL-IR: RFC 4959)
void PreLoginServer::start_authenticate(const std::string& tag, std::span<const imap::Token> args,
                                        std::string& out) {
  if (args.empty() || args.size() > 2 || args[0].kind != imap::TokenKind::Atom ||
      (args.size() == 2 && args[1].kind != imap::TokenKind::Atom)) {
    tagged(out, tag, "BAD Invalid arguments.");
    reset_command();
    return;
  }
  const auto mechanism = mechanism_from_name(args[0].text);
  if (!mechanism) {
    tagged(out, tag, "NO [CANNOT] Unsupported authentication mechanism.");
    reset_command();
    return;
  }
  sasl_tag_ = tag;
  mechanism_ = *mechanism;
  responses_.clear();
  if (args.size() == 2) {
    const std::string_view initial = args[1].text == "=" ? std::string_view() : args[1].text;
    if (!util::base64_decode(initial)) {
      tagged(out, tag, "BAD Invalid SASL response.");
      reset_command();
      return;
    }
    responses_.emplace_back(initial);
  }
  continue_sasl(out);
}

void PreLoginServer::continue_sasl(std::string& out) {
  if (responses_.size() >= responses_needed(mechanism_)) {
    finish_sasl(out);
    return;
  }
  if (mechanism_ == Mechanism::Login) {
    // The LOGIN mechanism's challenges: base64 of "Username:" and "Password:".
    out += responses_.empty() ? "+ VXNlcm5hbWU6\r\n" : "+ UGFzc3dvcmQ6\r\n";
  } else {
    out += "+ \r\n";
  }
  end_step();
  input_ = Input::SaslResponse;
}

void PreLoginServer::on_sasl_line(std::string_view line, std::string& out) {
  if (line == "*") {
    tagged(out, sasl_tag_, "BAD Authentication canceled.");
    reset_command();
    return;
  }
  if (command_.size() + line.size() + 2 > kMaxCommand) {
    tagged(out, sasl_tag_, "BAD Command too long.");
    reset_command();
    return;
  }
  command_.append(line).append("\r\n");
  if (!util::base64_decode(line)) {
    tagged(out, sasl_tag_, "BAD Invalid SASL response.");
    reset_command();
    return;
  }
  responses_.emplace_back(line);
  continue_sasl(out);
}

void PreLoginServer::finish_sasl(std::string& out) {
  DecodedCredentials decoded = sasl_credentials(mechanism_, responses_);
  if (!decoded.ok()) {
    tagged(out, sasl_tag_, "BAD Invalid SASL response.");
    reset_command();
    return;
  }
  LoginAttempt attempt;
  attempt.tag = sasl_tag_;
  attempt.mechanism = std::string(mechanism_name(mechanism_));
  attempt.sasl = true;
  attempt.method = std::move(decoded.credentials.method);
  attempt.user = std::move(decoded.credentials.user);
  attempt.authzid = std::move(decoded.credentials.authzid);
  attempt.secret = std::move(decoded.credentials.secret);
  complete_login(std::move(attempt));
}

void PreLoginServer::complete_login(LoginAttempt attempt) {
  std::size_t begin = 0;
  for (const std::size_t end : step_ends_) {
    attempt.steps.push_back(command_.substr(begin, end - begin));
    begin = end;
  }
  attempt.steps.push_back(command_.substr(begin));
  reset_command();
  ++logins_;
  login_ = std::move(attempt);
  waiting_ = true;
}

}  // namespace imapscope::route
