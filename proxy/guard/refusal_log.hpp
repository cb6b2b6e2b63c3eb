// Refusals logged at most once per address, reason and interval, with a count: ten
// thousand refused connections from one address make a handful of log lines, not ten
// thousand (the metric counts each). The first refusal of an interval is logged at
// once; those that follow in it are summed and reported by due() once it has passed.
// At most max_addresses are tracked; refusals from further addresses are summed under
// no address ("client=other").
//
// Sans-IO (the caller says what time it is and writes the lines) and thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/guard/address_key.hpp"

namespace imapscope::guard {

class RefusalLog {
 public:
  using Clock = std::chrono::steady_clock;
  RefusalLog(std::chrono::seconds interval, std::size_t max_addresses)
      : interval_(interval), max_addresses_(max_addresses) {}

  struct Line {
    std::optional<AddressKey> address;  // none: addresses beyond the table
    std::string reason;                 // a bounded word ("address_full", ...)
    std::uint64_t count = 0;            // refusals this line stands for
  };
  // A refusal. Returns the line to log now, or nothing when it is summed for later.
  std::optional<Line> note(const AddressKey& address, std::string_view reason, Clock::time_point now);
  // Sums of refusals whose interval has passed, to log now.
  std::vector<Line> due(Clock::time_point now);
  std::chrono::seconds interval() const { return interval_; }

 private:
  struct Key {
    AddressKey address;
    std::string reason;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept {
      return AddressKeyHash{}(k.address) ^ std::hash<std::string>{}(k.reason);
    }
  };
  struct Window {
    Clock::time_point started;
    std::uint64_t suppressed = 0;
  };

  const std::chrono::seconds interval_;
  const std::size_t max_addresses_;
  std::mutex mutex_;
  std::unordered_map<Key, Window, KeyHash> windows_;
  std::unordered_map<std::string, Window> overflow_;  // by reason
};

}  // namespace imapscope::guard
