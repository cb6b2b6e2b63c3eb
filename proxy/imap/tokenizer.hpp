// Cuts one line part of a message into tokens. A line part is the text between the
// message start (or the end of a literal) and the next CRLF. Tokens are appended to
// a vector owned by the caller, with offsets relative to the message start, so the
// caller may move the message bytes between line parts.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "proxy/imap/token.hpp"

namespace imapscope::imap {

struct TokenizeResult {
  // The line part ends with a literal header (the last token is that Literal).
  std::optional<LiteralHeader> literal;
  bool list_too_deep = false;  // more nested "(" than allowed
  bool malformed = false;      // unterminated quoted string, ")" without "("
};

class Tokenizer {
 public:
  explicit Tokenizer(unsigned max_list_depth) : max_depth_(max_list_depth) {}

  // message: all bytes of the message so far; [begin, end) is the line part without
  // its CRLF (or bare LF). Appends to out.
  TokenizeResult tokenize(std::string_view message, std::size_t begin, std::size_t end,
                          std::vector<Token>& out);

  unsigned depth() const { return depth_; }
  void reset() { depth_ = 0; }

 private:
  unsigned max_depth_;
  unsigned depth_ = 0;  // list nesting carried from one line part to the next
};

// Tokenizes the first line of text (up to CR/LF) on its own and sets each token's
// text: for the head of a message rejected by a limit, whose parts were not kept.
void tokenize_head(std::string_view text, unsigned max_list_depth, std::vector<Token>& out);

// Recognises a literal header that ends a line (without CRLF): "{12}", "{12+}",
// "~{12}" at a token start. Returns the header and where it begins.
struct TrailingLiteral {
  LiteralHeader header;
  std::size_t start;
};
std::optional<TrailingLiteral> parse_trailing_literal(std::string_view line);

}  // namespace imapscope::imap
