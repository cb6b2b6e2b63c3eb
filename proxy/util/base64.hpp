// Base64 (RFC 4648 §4: the standard alphabet, padded), as SASL carries it in IMAP's
// AUTHENTICATE (RFC 9051 §6.2.2). Decoding is strict: what a client sends there is
// credentials, and a lenient decoder would let two different byte strings name the
// same user.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace imapscope::util {

std::string base64_encode(std::string_view bytes);

// The bytes text encodes, or nullopt unless text is canonical base64: the alphabet
// only (no blanks, no line breaks), a length that is a multiple of 4, "=" only as
// the last one or two characters, and the unused bits before the padding zero.
// "" decodes to "".
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace imapscope::util
