// Helpers shared by the codec benchmarks: building streams and checking what a
// decoder returned for them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "proxy/imap/events.hpp"

namespace imapscope::bench {

// Concatenates string-like and integer parts (g++ 12 has no std::format).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  auto add = [&s](const auto& part) {
    if constexpr (std::is_integral_v<std::decay_t<decltype(part)>>) {
      s += std::to_string(part);
    } else {
      s += std::string_view(part);
    }
  };
  (add(parts), ...);
  return s;
}

// Mail text: printable ASCII lines with CRLF, no NUL, exactly size bytes.
inline std::string make_text(std::size_t size) {
  std::string text;
  text.reserve(size + 128);
  for (unsigned line = 0; text.size() < size; ++line) {
    text += cat("Line ", line, " of a plain text body, as a mail client would fetch it: ",
                "the quick brown fox jumps over the lazy dog.\r\n");
  }
  text.resize(size);
  return text;
}

// What a decoder returned, by kind, and how many stream bytes its events covered.
// Cheap enough to keep inside the timed loop: a broken codec that drops or skips
// input is caught on every iteration, not only in the untimed check.
struct Tally {
  std::array<std::uint64_t, 8> kinds{};
  std::uint64_t bytes = 0;

  void add(const imap::Event& ev) {
    ++kinds[static_cast<std::size_t>(ev.kind)];
    bytes += ev.raw.size();
  }
  std::uint64_t count(imap::EventKind kind) const { return kinds[static_cast<std::size_t>(kind)]; }
};

// Empty when the tally is what the stream must give, else what is wrong.
inline std::string check_tally(std::string_view direction, const Tally& t, std::uint64_t messages,
                               std::uint64_t bytes) {
  using imap::EventKind;
  if (t.count(EventKind::Error) != 0 || t.count(EventKind::Skipped) != 0) {
    return cat(direction, ": ", t.count(EventKind::Error), " Error and ", t.count(EventKind::Skipped),
               " Skipped events");
  }
  if (t.count(EventKind::Message) != messages) {
    return cat(direction, ": ", t.count(EventKind::Message), " Message events, expected ", messages);
  }
  if (t.bytes != bytes) return cat(direction, ": events cover ", t.bytes, " bytes of ", bytes);
  return {};
}

}  // namespace imapscope::bench
