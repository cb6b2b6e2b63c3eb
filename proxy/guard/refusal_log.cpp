#include "proxy/guard/refusal_log.hpp"

namespace imapscope::guard {

std::optional<RefusalLog::Line> RefusalLog::note(const AddressKey& address, std::string_view reason,
                                                 Clock::time_point now) {
  std::lock_guard lock(mutex_);
  Key key{address, std::string(reason)};
  const auto it = windows_.find(key);
  if (it != windows_.end()) {
    ++it->second.suppressed;
    return std::nullopt;
  }
  if (windows_.size() >= max_addresses_) {
    auto& w = overflow_[key.reason];
    if (w.started == Clock::time_point{}) w.started = now;
    ++w.suppressed;
    return std::nullopt;
  }
  windows_.emplace(key, Window{now, 0});
  return Line{address, std::move(key.reason), 1};
}

std::vector<RefusalLog::Line> RefusalLog::due(Clock::time_point now) {
  std::vector<Line> lines;
  std::lock_guard lock(mutex_);
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (now - it->second.started < interval_) {
      ++it;
      continue;
    }
    if (it->second.suppressed > 0) {
      lines.push_back(Line{it->first.address, it->first.reason, it->second.suppressed});
      // Still refusing: the next interval sums again, without a line of its own first.
      it->second = Window{now, 0};
      ++it;
    } else {
      it = windows_.erase(it);
    }
  }
  for (auto it = overflow_.begin(); it != overflow_.end();) {
    if (now - it->second.started < interval_) {
      ++it;
      continue;
    }
    lines.push_back(Line{std::nullopt, it->first, it->second.suppressed});
    it = overflow_.erase(it);
  }
  return lines;
}

}  // namespace imapscope::guard
