// Small text helpers shared by the layers above: whole-string numbers, and JSON
// string literals written by hand (event lines, HTTP error bodies) without building
// a JSON document.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::util {

// "42" -> 42; nullopt for an empty string, anything but digits, or overflow.
std::optional<std::uint64_t> parse_unsigned(std::string_view text);

// Appends text as a JSON string (quotes included), escaped per RFC 8259; bytes that
// aren't UTF-8 become U+FFFD (mail carries 8-bit text in any charset), so the
// result always parses.
void append_json_string(std::string& out, std::string_view text);

}  // namespace imapscope::util
