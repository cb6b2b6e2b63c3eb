// Client versions as numbers, for version ranges in rules: "115.3.1" < "115.10".
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace imapscope::policy {

struct Version {
  std::vector<std::uint32_t> parts;  // 115.3.1 -> {115, 3, 1}
  // Missing parts count as 0: 115 == 115.0.
  friend bool operator<(const Version& a, const Version& b) { return compare(a, b) < 0; }
  friend bool operator<=(const Version& a, const Version& b) { return compare(a, b) <= 0; }
  static int compare(const Version& a, const Version& b);
};

// The first run of digits and dots in text ("Thunderbird 115.3.1esr" -> 115.3.1);
// nullopt when there is none. Clients write versions freely, so anything around
// the number is ignored.
std::optional<Version> parse_version(std::string_view text);

}  // namespace imapscope::policy
