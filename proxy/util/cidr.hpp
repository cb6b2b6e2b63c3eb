// IP addresses and CIDR blocks as they appear in config files ("192.0.2.0/24",
// "2001:db8::/32"): who may send a PROXY header, which sessions get a transcript.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace imapscope::util {

struct Cidr {
  std::array<unsigned char, 16> address{};
  bool v6 = false;
  unsigned prefix = 0;
  // "192.0.2.0/24", "2001:db8::/32", or an address alone; nullopt when it isn't one.
  static std::optional<Cidr> parse(std::string_view text);
  // An address without port. An IPv4-mapped IPv6 address (::ffff:192.0.2.1, what a
  // dual-stack socket reports) counts as the IPv4 address it carries.
  bool contains(std::string_view address) const;
};

// "127.0.0.1:51234" / "[::1]:51234" / "::1:51234" -> the address part.
std::string_view address_of(std::string_view peer);

}  // namespace imapscope::util
