// The tokens of one whole command whose bytes are all at hand, literals included:
//   a LOGIN {5}\r\nalice "secret"\r\n
// The codec's Tokenizer cuts each line part; each literal's payload becomes its
// token's text (has_content). The pre-login server reads its commands with it, and
// the replay reads the ID parameters the client sent.
#pragma once

#include <string_view>
#include <vector>

#include "proxy/imap/token.hpp"

namespace imapscope::route {

struct CommandTokens {
  std::vector<imap::Token> tokens;  // texts are views into the bytes given
  bool malformed = false;  // unbalanced list, unterminated quoted string, too deep,
                           // a literal cut short or its size unreadable
};

// bytes: line parts each ending in CRLF (or LF), a literal's payload after the line
// part that announces it. Bytes after the last line break are ignored.
CommandTokens tokenize_command(std::string_view bytes, unsigned max_list_depth);

}  // namespace imapscope::route
