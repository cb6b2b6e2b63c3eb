// Character classes of the IMAP grammar, each with the ABNF it implements.
// RFC 9051 §9 (IMAP4rev2) and RFC 3501 §9 (IMAP4rev1) agree on all of these.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::imap {

namespace detail {
enum : std::uint8_t {
  kAtomChar = 1,     // ATOM-CHAR
  kAstringChar = 2,  // ASTRING-CHAR
  kTagChar = 4,      // tag characters
  kDigit = 8,        // DIGIT
};

constexpr std::array<std::uint8_t, 256> make_char_table() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    // CHAR = %x01-7F; CTL = %x00-1F / %x7F
    const bool is_char = c >= 0x01 && c <= 0x7f;
    const bool is_ctl = c <= 0x1f || c == 0x7f;
    // atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
    // list-wildcards = "%" / "*";  quoted-specials = DQUOTE / "\";  resp-specials = "]"
    const bool atom_special = c == '(' || c == ')' || c == '{' || c == ' ' || is_ctl || c == '%' ||
                              c == '*' || c == '"' || c == '\\' || c == ']';
    std::uint8_t v = 0;
    // ATOM-CHAR = <any CHAR except atom-specials>
    if (is_char && !atom_special) v |= kAtomChar;
    // ASTRING-CHAR = ATOM-CHAR / resp-specials
    if ((v & kAtomChar) || c == ']') v |= kAstringChar;
    // tag = 1*<any ASTRING-CHAR except "+">
    if ((v & kAstringChar) && c != '+') v |= kTagChar;
    if (c >= '0' && c <= '9') v |= kDigit;
    t[static_cast<std::size_t>(c)] = v;
  }
  return t;
}
inline constexpr auto kCharTable = make_char_table();
}  // namespace detail

constexpr bool is_atom_char(char c) {
  return detail::kCharTable[static_cast<unsigned char>(c)] & detail::kAtomChar;
}
constexpr bool is_astring_char(char c) {
  return detail::kCharTable[static_cast<unsigned char>(c)] & detail::kAstringChar;
}
constexpr bool is_tag_char(char c) {
  return detail::kCharTable[static_cast<unsigned char>(c)] & detail::kTagChar;
}
constexpr bool is_digit(char c) { return detail::kCharTable[static_cast<unsigned char>(c)] & detail::kDigit; }

// ASCII-only case folding: IMAP keywords are case-insensitive ASCII (RFC 9051 §9 "Note 1").
constexpr char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c; }
constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
std::string ascii_upper(std::string_view s);
std::string ascii_lower(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// text as a quoted string (RFC 9051 §9): quotes around, " and \ escaped; nothing for
// text a quoted string can't carry (CR, LF, NUL).
std::optional<std::string> quoted(std::string_view text);

// number = 1*DIGIT ; unsigned 32-bit (RFC 9051 §9). Parses a whole view or fails.
std::optional<std::uint32_t> parse_number(std::string_view s);
std::optional<std::uint64_t> parse_number64(std::string_view s);

}  // namespace imapscope::imap
