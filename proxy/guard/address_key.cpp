#include "proxy/guard/address_key.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace imapscope::guard {

std::optional<AddressKey> AddressKey::parse(std::string_view address) {
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') address = address.substr(1, address.size() - 2);
  const std::string text(address);
  AddressKey key;
  unsigned char raw[16];
  if (inet_pton(AF_INET, text.c_str(), raw) == 1) {
    std::memcpy(key.bytes.data(), raw, 4);
    return key;
  }
  if (inet_pton(AF_INET6, text.c_str(), raw) != 1) return std::nullopt;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(raw, kMapped, sizeof kMapped) == 0) {
    std::memcpy(key.bytes.data(), raw + 12, 4);
    return key;
  }
  key.v6 = true;
  std::memcpy(key.bytes.data(), raw, 8);
  return key;
}

std::string AddressKey::to_string() const {
  char text[INET6_ADDRSTRLEN];
  if (!v6) {
    inet_ntop(AF_INET, bytes.data(), text, sizeof text);
    return text;
  }
  unsigned char raw[16] = {};
  std::memcpy(raw, bytes.data(), 8);
  inet_ntop(AF_INET6, raw, text, sizeof text);
  return std::string(text) + "/64";
}

std::size_t AddressKeyHash::operator()(const AddressKey& key) const noexcept {
  std::uint64_t v = 0;
  std::memcpy(&v, key.bytes.data(), 8);
  // A cheap mix: the table is bounded, so a crafted collision chain is too.
  v ^= key.v6 ? 0x9e3779b97f4a7c15ULL : 0;
  v ^= v >> 33;
  v *= 0xff51afd7ed558ccdULL;
  v ^= v >> 33;
  return static_cast<std::size_t>(v);
}

}  // namespace imapscope::guard
