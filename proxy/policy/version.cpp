#include "proxy/policy/version.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"

namespace imapscope::policy {

int Version::compare(const Version& a, const Version& b) {
  const std::size_t n = std::max(a.parts.size(), b.parts.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t x = i < a.parts.size() ? a.parts[i] : 0;
    const std::uint32_t y = i < b.parts.size() ? b.parts[i] : 0;
    if (x != y) return x < y ? -1 : 1;
  }
  return 0;
}

std::optional<Version> parse_version(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && !imap::is_digit(text[i])) ++i;
  if (i == text.size()) return std::nullopt;
  Version v;
  while (i < text.size() && imap::is_digit(text[i])) {
    std::uint64_t part = 0;
    while (i < text.size() && imap::is_digit(text[i])) {
      part = std::min<std::uint64_t>(part * 10 + static_cast<std::uint64_t>(text[i] - '0'), UINT32_MAX);
      ++i;
    }
    v.parts.push_back(static_cast<std::uint32_t>(part));
    if (i + 1 < text.size() && text[i] == '.' && imap::is_digit(text[i + 1])) {
      ++i;
    } else {
      break;
    }
  }
  return v;
}

}  // namespace imapscope::policy
