// A client message as the CommandDecoder parsed it.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "proxy/imap/token.hpp"
#include "proxy/imap/verbs.hpp"

namespace imapscope::imap {

enum class CommandKind : std::uint8_t {
  Tagged,        // command = tag SP command-name [SP args] CRLF  (RFC 9051 §9)
  IdleDone,      // the line that ends IDLE: "DONE" (RFC 2177); anything else there is malformed
  SaslResponse,  // a line answering an AUTHENTICATE challenge, or "*" to cancel.
                 // It is a credential: never log it.
};
std::string_view command_kind_name(CommandKind kind);

struct Command {
  CommandKind kind = CommandKind::Tagged;
  std::string_view tag;
  std::string_view name;          // the command name as sent
  Verb verb = Verb::Other;
  bool uid = false;               // "UID FETCH", "UID STORE"...: name and verb are the second word
  std::span<const Token> args;    // the arguments after the name
  std::string_view line;          // IdleDone / SaslResponse: the line without CRLF

  bool complete = false;          // false on MessagePart: a literal is still to come
  bool aborted = false;           // the server answered before the synchronising literal was sent
  bool rejected = false;          // a limit was hit: only tag and name were read
  bool malformed = false;         // no tag or name, unbalanced list, unterminated quoted string
  std::uint64_t literal_bytes = 0;
};

}  // namespace imapscope::imap
