#include "proxy/imap/tokenizer.hpp"

#include <algorithm>
#include <array>

#include "proxy/imap/abnf.hpp"

namespace imapscope::imap {

bool Token::is_atom(std::string_view name) const {
  return kind == TokenKind::Atom && iequals(text, name);
}

std::optional<std::string> Token::string_value() const {
  switch (kind) {
    case TokenKind::Atom:
      return std::string(text);
    case TokenKind::Quoted: {
      // quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = ... / "\" quoted-specials
      std::string s;
      s.reserve(text.size());
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        s.push_back(text[i]);
      }
      return s;
    }
    case TokenKind::Literal:
      if (has_content) return std::string(text);
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

std::optional<TrailingLiteral> parse_trailing_literal(std::string_view line) {
  // literal header at the end of a line: [SP / "(" / start] ["~"] "{" 1*DIGIT ["+"] "}"
  std::size_t i = line.size();
  if (i < 3 || line[i - 1] != '}') return std::nullopt;
  --i;
  LiteralHeader h;
  if (line[i - 1] == '+') {
    h.synchronizing = false;
    --i;
  }
  const std::size_t digits_end = i;
  while (i > 0 && is_digit(line[i - 1])) --i;
  const std::size_t digits_begin = i;
  if (digits_begin == digits_end || i == 0 || line[i - 1] != '{') return std::nullopt;
  --i;
  if (i > 0 && line[i - 1] == '~') {
    h.binary = true;
    --i;
  }
  if (i > 0 && line[i - 1] != ' ' && line[i - 1] != '(') return std::nullopt;
  const auto digits = line.substr(digits_begin, digits_end - digits_begin);
  if (auto n = parse_number64(digits)) {
    h.size = *n;
  } else {
    h.size_overflow = true;
  }
  return TrailingLiteral{h, i};
}

void tokenize_head(std::string_view text, unsigned max_list_depth, std::vector<Token>& out) {
  auto end = std::min(text.find('\n'), text.size());
  if (end > 0 && text[end - 1] == '\r') --end;
  out.clear();
  Tokenizer tokenizer(max_list_depth);
  (void)tokenizer.tokenize(text, 0, end, out);
  for (auto& t : out) t.text = text.substr(t.offset, t.length);
}

namespace {

// Skips a quoted string starting after its opening DQUOTE; returns the index of the
// closing DQUOTE, or end if the line ends first.
std::size_t skip_quoted(const char* p, std::size_t i, std::size_t end) {
  while (i < end) {
    if (p[i] == '\\' && i + 1 < end) {
      i += 2;
    } else if (p[i] == '"') {
      return i;
    } else {
      ++i;
    }
  }
  return end;
}

// Bytes that end an atom outside a section, and "[" that opens one.
constexpr auto kAtomStop = [] {
  std::array<bool, 256> t{};
  for (unsigned char c : {' ', '(', ')', '"', '['}) t[c] = true;
  return t;
}();

Token make_token(TokenKind kind, std::size_t offset, std::size_t length) {
  Token t;
  t.kind = kind;
  t.offset = static_cast<std::uint32_t>(offset);
  t.length = static_cast<std::uint32_t>(length);
  return t;
}

}  // namespace

TokenizeResult Tokenizer::tokenize(std::string_view message, std::size_t begin, std::size_t end,
                                   std::vector<Token>& out) {
  TokenizeResult result;
  const char* p = message.data();
  std::size_t i = begin;
  while (i < end) {
    const char c = p[i];
    if (c == ' ') {
      ++i;
      continue;
    }
    if (c == '(') {
      if (depth_ >= max_depth_) {
        result.list_too_deep = true;
        return result;
      }
      ++depth_;
      out.push_back(make_token(TokenKind::ListOpen, i, 1));
      ++i;
      continue;
    }
    if (c == ')') {
      if (depth_ == 0) {
        result.malformed = true;
      } else {
        --depth_;
      }
      out.push_back(make_token(TokenKind::ListClose, i, 1));
      ++i;
      continue;
    }
    if (c == '"') {
      const std::size_t close = skip_quoted(p, i + 1, end);
      out.push_back(make_token(TokenKind::Quoted, i + 1, close - i - 1));
      if (close == end) {
        result.malformed = true;  // quoted strings never span lines
        i = end;
      } else {
        i = close + 1;
      }
      continue;
    }
    if (c == '{' || (c == '~' && i + 1 < end && p[i + 1] == '{')) {
      // A literal header counts only where it ends the line part.
      auto lit = parse_trailing_literal(std::string_view(p + i, end - i));
      if (lit && lit->start == 0) {
        Token t = make_token(TokenKind::Literal, end, 0);
        t.literal = lit->header;
        out.push_back(t);
        result.literal = lit->header;
        return result;
      }
    }
    // An atom; "[" opens a section (BODY[HEADER.FIELDS (From)]<0.10>) that runs to its
    // matching "]" and may hold spaces, lists and quoted strings (RFC 9051 §6.4.5).
    std::size_t j = i;
    unsigned brackets = 0;
    while (j < end) {
      const char d = p[j];
      if (brackets != 0) {
        if (d == '"') {
          j = skip_quoted(p, j + 1, end);
          if (j == end) break;
        } else if (d == '[') {
          ++brackets;
        } else if (d == ']') {
          --brackets;
        }
        ++j;
        continue;
      }
      if (kAtomStop[static_cast<unsigned char>(d)]) {
        if (d != '[') break;
        ++brackets;
      }
      ++j;
    }
    if (brackets != 0) result.malformed = true;
    out.push_back(make_token(TokenKind::Atom, i, j - i));
    i = j;
  }
  return result;
}

}  // namespace imapscope::imap
