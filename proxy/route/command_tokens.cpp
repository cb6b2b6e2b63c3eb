#include "proxy/route/command_tokens.hpp"

#include "proxy/imap/tokenizer.hpp"

namespace imapscope::route {

CommandTokens tokenize_command(std::string_view bytes, unsigned max_list_depth) {
  CommandTokens result;
  imap::Tokenizer tokenizer(max_list_depth);
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    const auto lf = bytes.find('\n', pos);
    if (lf == std::string_view::npos) break;
    const std::size_t end = lf > pos && bytes[lf - 1] == '\r' ? lf - 1 : lf;
    const auto part = tokenizer.tokenize(bytes, pos, end, result.tokens);
    if (part.malformed || part.list_too_deep) result.malformed = true;
    pos = lf + 1;
    if (!part.literal) continue;
    // The Tokenizer leaves a literal token empty at the end of its line part: its
    // payload is the next `size` bytes.
    if (part.literal->size_overflow || part.literal->size > bytes.size() - pos) {
      result.malformed = true;
      break;
    }
    imap::Token& literal = result.tokens.back();
    literal.has_content = true;
    literal.offset = static_cast<std::uint32_t>(pos);
    literal.length = static_cast<std::uint32_t>(part.literal->size);
    pos += part.literal->size;
  }
  if (tokenizer.depth() != 0) result.malformed = true;
  for (auto& token : result.tokens) token.text = bytes.substr(token.offset, token.length);
  return result;
}

}  // namespace imapscope::route
