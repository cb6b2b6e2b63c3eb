#include "proxy/policy/rewrite.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/response.hpp"

namespace imapscope::policy {
namespace {

struct Segment {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool before_literal = false;
};

// Calls fn(segment) for each text segment of message bytes, in order; stops when fn
// returns false.
template <typename Fn>
void for_each_segment(std::string_view bytes, bool literals_possible, bool starts_message, Fn&& fn) {
  std::size_t pos = 0;
  bool first = starts_message;
  while (pos < bytes.size()) {
    const auto nl = bytes.find('\n', pos);
    const std::size_t line_end = nl == std::string_view::npos ? bytes.size() : nl;
    std::size_t text_end = line_end;
    if (nl != std::string_view::npos && text_end > pos && bytes[text_end - 1] == '\r') --text_end;
    Segment s{pos, text_end, false};
    if (first) {
      const auto space = bytes.substr(pos, text_end - pos).find(' ');
      s.begin = space == std::string_view::npos ? text_end : pos + space + 1;
      first = false;
    }
    std::size_t next = nl == std::string_view::npos ? bytes.size() : nl + 1;
    if (literals_possible && nl != std::string_view::npos) {
      if (const auto literal = trailing_literal(bytes.substr(pos, text_end - pos))) {
        s.end = std::max(s.begin, pos + literal->start);
        s.before_literal = true;
        // The payload is never edited; a payload not in these bytes ends the walk.
        next = literal->size > bytes.size() - next ? bytes.size() : next + static_cast<std::size_t>(literal->size);
      }
    }
    if (s.end > s.begin && !fn(s)) return;
    pos = next;
  }
}

bool hidden_by(std::string_view cap, const std::string& pattern) {
  if (!pattern.empty() && pattern.back() == '*') {
    const auto prefix = std::string_view(pattern).substr(0, pattern.size() - 1);
    return cap.size() >= prefix.size() && imap::iequals(cap.substr(0, prefix.size()), prefix);
  }
  return imap::iequals(cap, pattern);
}

}  // namespace

std::optional<TrailingLiteral> trailing_literal(std::string_view line) {
  // literal = "{" number64 ["+"] "}" / literal8 = "~{" number64 ["+"] "}"; "-" is LITERAL-.
  if (line.size() < 3 || line.back() != '}') return std::nullopt;
  std::size_t i = line.size() - 1;
  if (line[i - 1] == '+' || line[i - 1] == '-') --i;
  const std::size_t digits_end = i;
  while (i > 0 && imap::is_digit(line[i - 1])) --i;
  if (i == digits_end || i == 0 || line[i - 1] != '{') return std::nullopt;
  const auto size = imap::parse_number64(line.substr(i, digits_end - i));
  if (!size) return std::nullopt;
  std::size_t start = i - 1;
  if (start > 0 && line[start - 1] == '~') --start;
  return TrailingLiteral{start, *size};
}

bool replace_text(std::string_view message, bool literals_possible, bool starts_message,
                  const std::vector<Replacement>& replacements, std::string& out) {
  std::string edited_message;
  std::size_t copied = 0;
  bool changed = false;
  for_each_segment(message, literals_possible, starts_message, [&](const Segment& s) {
    const auto original = message.substr(s.begin, s.end - s.begin);
    // Most lines don't match: look before copying.
    if (std::none_of(replacements.begin(), replacements.end(),
                     [&](const Replacement& r) { return re2::RE2::PartialMatch(original, *r.pattern); })) {
      return true;
    }
    std::string text(original);
    bool edited = false;
    for (const auto& r : replacements) edited = re2::RE2::GlobalReplace(&text, *r.pattern, r.with) > 0 || edited;
    // A line that now ends like "{5}" would make the receiver wait for a literal.
    if (!edited || (literals_possible && !s.before_literal && trailing_literal(text))) return true;
    edited_message.append(message.substr(copied, s.begin - copied)).append(text);
    copied = s.end;
    changed = true;
    return true;
  });
  if (!changed) return false;
  edited_message.append(message.substr(copied));
  out = std::move(edited_message);
  return true;
}

std::string edit_capabilities(std::string_view list, std::span<const Rule* const> rules) {
  std::string out;
  out.reserve(list.size() + 32);
  bool changed = false;
  auto is_hidden = [&](std::string_view cap) {
    for (const Rule* rule : rules) {
      for (const auto& pattern : rule->actions.hide_capabilities) {
        if (hidden_by(cap, pattern)) return true;
      }
    }
    return false;
  };
  std::vector<std::string_view> present;
  imap::for_each_word(list, [&](std::string_view cap) {
    if (is_hidden(cap)) {
      changed = true;
      return;
    }
    present.push_back(cap);
    if (!out.empty()) out += ' ';
    out += cap;
  });
  for (const Rule* rule : rules) {
    for (const auto& cap : rule->actions.add_capabilities) {
      if (is_hidden(cap)) continue;
      if (std::any_of(present.begin(), present.end(), [&](std::string_view p) { return imap::iequals(p, cap); })) {
        continue;
      }
      present.push_back(cap);
      if (!out.empty()) out += ' ';
      out += cap;
      changed = true;
    }
  }
  if (!changed) return std::string(list);
  return out;
}

}  // namespace imapscope::policy
