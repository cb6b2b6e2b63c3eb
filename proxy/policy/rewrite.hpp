// The byte-level edits rules make. Every edit keeps the stream's framing: text is
// changed only in line text outside literals (so literal lengths stay right), the
// tag or "*"/"+" that starts a message is never touched (so tags stay consistent on
// both legs), and no edit adds a line break.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/policy/rule.hpp"

namespace imapscope::policy {

// A literal header ("{12}", "{12+}", "~{12}") that ends a line (without CRLF).
struct TrailingLiteral {
  std::size_t start = 0;  // where "{" or "~{" begins
  std::uint64_t size = 0;
};
std::optional<TrailingLiteral> trailing_literal(std::string_view line);

// Applies the replacements to each text segment of message: every line without its
// CRLF, its trailing literal header and (if starts_message) the leading tag/"*"/"+".
// literals_possible: lines may end with a literal header (commands, data responses;
// not status lines, where "{5}" is text). A replacement that would make a segment end
// in something that reads as a literal header is not applied.
// Returns true and sets out to the edited message when something changed; out is
// untouched otherwise, and nothing is copied for a message no pattern matches.
bool replace_text(std::string_view message, bool literals_possible, bool starts_message,
                  const std::vector<Replacement>& replacements, std::string& out);

// Edits a space-separated capability list with the rules' hide/add lists. Adds go at
// the end, once; hides win over adds. Returns the list unchanged when nothing applies.
std::string edit_capabilities(std::string_view list, std::span<const Rule* const> rules);

}  // namespace imapscope::policy
