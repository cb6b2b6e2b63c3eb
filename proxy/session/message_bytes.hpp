// Small helpers over a message's raw bytes, shared by the session's files.
#pragma once

#include <cstddef>
#include <string_view>

namespace imapscope::session {

// The CRLF (or bare LF) that ends raw, or "".
inline std::string_view line_ending(std::string_view raw) {
  if (raw.size() >= 2 && raw.substr(raw.size() - 2) == "\r\n") return raw.substr(raw.size() - 2);
  if (!raw.empty() && raw.back() == '\n') return raw.substr(raw.size() - 1);
  return {};
}

// Where inner (a view into outer) begins in outer.
inline std::size_t offset_in(std::string_view outer, std::string_view inner) {
  return static_cast<std::size_t>(inner.data() - outer.data());
}

// The first line of raw without its CRLF.
inline std::string_view first_line(std::string_view raw) {
  auto line = raw.substr(0, raw.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace imapscope::session
