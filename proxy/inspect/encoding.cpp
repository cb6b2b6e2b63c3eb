#include "proxy/inspect/encoding.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "proxy/util/base64.hpp"

namespace imapscope::inspect {

std::string base64_encode(std::string_view bytes) { return util::base64_encode(bytes); }

std::optional<std::string> base64_decode(std::string_view text) {
  if (text == "=") return std::string();  // SASL-IR's empty initial response (RFC 4959)
  return util::base64_decode(text);
}

std::string hex(const unsigned char* bytes, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 15];
  }
  return out;
}

std::string keyed_digest_hex(std::string_view key, std::string_view data, std::size_t bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), digest, &length);
  return hex(digest, std::min<std::size_t>(length, bytes));
}

}  // namespace imapscope::inspect
