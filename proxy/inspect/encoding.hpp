// Byte encodings transcripts use: base64 (SASL payloads read, bodies written) and
// lower-case hex (digests).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::inspect {

std::string base64_encode(std::string_view bytes);
// "" and "=" (SASL's empty answer) decode to ""; nullopt when text isn't base64.
std::optional<std::string> base64_decode(std::string_view text);
std::string hex(const unsigned char* bytes, std::size_t size);

}  // namespace imapscope::inspect
