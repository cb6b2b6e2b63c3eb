// Byte encodings transcripts use: base64 (SASL payloads read, bodies written) and
// lower-case hex (digests).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::inspect {

// util/base64.hpp's, strict: only canonical base64 decodes.
std::string base64_encode(std::string_view bytes);
// "" and "=" (SASL's empty answer) decode to ""; nullopt when text isn't base64.
std::optional<std::string> base64_decode(std::string_view text);
std::string hex(const unsigned char* bytes, std::size_t size);
// HMAC-SHA256 of data under key, its first `bytes` bytes (at most 32) in hex: user
// labels, the diagnostics state's keys, the admin page's cookie.
std::string keyed_digest_hex(std::string_view key, std::string_view data, std::size_t bytes);

}  // namespace imapscope::inspect
