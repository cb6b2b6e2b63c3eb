// Who counts as one client for the limits before login and the login penalty: an
// IPv4 address, or an IPv6 /64 (one customer's network: a host picks any address
// in it at will, so per address would be no limit at all). An IPv4-mapped IPv6
// address (::ffff:192.0.2.1, what a dual-stack socket reports) is the IPv4 address.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::guard {

struct AddressKey {
  std::array<unsigned char, 8> bytes{};  // IPv4: the 4 bytes; IPv6: the /64 prefix
  bool v6 = false;

  // "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (no port); nullopt when it isn't one.
  static std::optional<AddressKey> parse(std::string_view address);
  // "192.0.2.1" or "2001:db8:1:2::/64", for the log.
  std::string to_string() const;
  bool operator==(const AddressKey&) const = default;
};

struct AddressKeyHash {
  std::size_t operator()(const AddressKey& key) const noexcept;
};

}  // namespace imapscope::guard
