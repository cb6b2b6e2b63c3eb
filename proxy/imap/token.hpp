// The tokens a decoder cuts a message into: the arguments of a command, the data
// of a response. A token is a view into the message bytes; see tokenizer.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::imap {

enum class TokenKind : std::uint8_t {
  Atom,       // atom, number, NIL, flag (\Seen), sequence set, BODY[...]<..> section
  Quoted,     // quoted string; text() is the content between the quotes, escapes kept
  Literal,    // {n} {n+} ~{n} ~{n+}; text() is the content when kept (has_content)
  ListOpen,   // "("
  ListClose,  // ")"
};

// literal = "{" number64 ["+"] "}" CRLF *CHAR8   (RFC 9051 §9; "+" is LITERAL+/LITERAL-)
// literal8 = "~{" number64 ["+"] "}" CRLF *OCTET  (RFC 3516 BINARY)
struct LiteralHeader {
  std::uint64_t size = 0;
  bool synchronizing = true;  // {n}: the sender waits for "+" before the payload
  bool binary = false;        // ~{n}: literal8, may contain NUL
  bool size_overflow = false; // more digits than 64 bits hold: the payload can't be delimited
};

struct Token {
  TokenKind kind = TokenKind::Atom;
  bool has_content = false;   // Literal: its payload is kept (size <= max_inline_literal)
  LiteralHeader literal{};    // Literal only
  std::uint32_t offset = 0;   // position of text() in the message bytes
  std::uint32_t length = 0;
  std::string_view text;      // filled when the message is complete

  bool is_atom(std::string_view name) const;  // case-insensitive atom comparison
  bool is_nil() const { return is_atom("NIL"); }
  // astring/nstring value: atom text, unescaped quoted content, or kept literal content.
  // std::nullopt for lists, NIL and literals whose payload streamed through.
  std::optional<std::string> string_value() const;
};

}  // namespace imapscope::imap
