#include "proxy/util/cidr.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <string>

namespace imapscope::util {
namespace {

bool parse_address(std::string_view text, std::array<unsigned char, 16>& out, bool& v6) {
  const std::string s(text);
  if (inet_pton(AF_INET, s.c_str(), out.data()) == 1) {
    v6 = false;
    return true;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.data()) == 1) {
    v6 = true;
    return true;
  }
  return false;
}

bool is_v4_mapped(const std::array<unsigned char, 16>& a) {
  return std::all_of(a.begin(), a.begin() + 10, [](unsigned char b) { return b == 0; }) && a[10] == 0xff &&
         a[11] == 0xff;
}

}  // namespace

std::optional<Cidr> Cidr::parse(std::string_view text) {
  Cidr c;
  const auto slash = text.find('/');
  if (!parse_address(text.substr(0, slash), c.address, c.v6)) return std::nullopt;
  const unsigned max = c.v6 ? 128 : 32;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    unsigned prefix = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || end != digits.data() + digits.size() || prefix > max) return std::nullopt;
    c.prefix = prefix;
  }
  return c;
}

bool Cidr::contains(std::string_view text) const {
  std::array<unsigned char, 16> a{};
  bool is_v6 = false;
  if (!parse_address(text, a, is_v6)) return false;
  if (is_v6 && !v6 && is_v4_mapped(a)) {
    std::copy(a.begin() + 12, a.end(), a.begin());
    is_v6 = false;
  }
  if (is_v6 != v6) return false;
  unsigned bits = prefix;
  for (std::size_t i = 0; bits > 0; ++i, bits = bits >= 8 ? bits - 8 : 0) {
    const unsigned mask = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
    if ((a[i] & mask) != (address[i] & mask)) return false;
  }
  return true;
}

std::string_view address_of(std::string_view peer) {
  const auto colon = peer.rfind(':');
  auto address = colon == std::string_view::npos ? peer : peer.substr(0, colon);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') address = address.substr(1, address.size() - 2);
  return address;
}

}  // namespace imapscope::util
