#include "proxy/guard/login_penalty.hpp"

#include <algorithm>

namespace imapscope::guard {

std::chrono::milliseconds LoginPenalty::penalty_for(unsigned failures) const {
  if (failures == 0 || !settings_.enabled) return std::chrono::milliseconds(0);
  auto wait = settings_.initial;
  for (unsigned i = 1; i < failures && wait < settings_.max; ++i) wait *= 2;
  return std::min(wait, settings_.max);
}

std::chrono::milliseconds LoginPenalty::delay(const AddressKey& address, Clock::time_point now) {
  if (!settings_.enabled) return std::chrono::milliseconds(0);
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(address);
  if (it == entries_.end()) return std::chrono::milliseconds(0);
  const Entry& e = *it->second;
  if (now - e.last_failure >= settings_.expire) {
    order_.erase(it->second);
    entries_.erase(it);
    return std::chrono::milliseconds(0);
  }
  const auto until = e.last_failure + penalty_for(e.failures);
  if (until <= now) return std::chrono::milliseconds(0);
  // Rounded up: a wait of a fraction of a millisecond still waits.
  return std::chrono::ceil<std::chrono::milliseconds>(until - now);
}

LoginPenalty::Failure LoginPenalty::failed(const AddressKey& address, std::uint64_t credentials,
                                           Clock::time_point now) {
  Failure out;
  if (!settings_.enabled) return out;
  std::lock_guard lock(mutex_);
  auto it = entries_.find(address);
  if (it != entries_.end() && now - it->second->last_failure >= settings_.expire) {
    order_.erase(it->second);
    entries_.erase(it);
    it = entries_.end();
  }
  if (it == entries_.end()) {
    if (entries_.size() >= settings_.max_addresses && !order_.empty()) {
      entries_.erase(order_.front().address);
      order_.pop_front();
    }
    order_.push_back(Entry{address, 0, 0, now});
    it = entries_.emplace(address, std::prev(order_.end())).first;
  } else {
    order_.splice(order_.end(), order_, it->second);  // now the most recent
  }
  Entry& e = *it->second;
  out.repeated = e.failures > 0 && e.last_credentials == credentials;
  if (!out.repeated) ++e.failures;
  e.last_credentials = credentials;
  e.last_failure = now;
  out.failures = e.failures;
  out.next_delay = penalty_for(e.failures);
  return out;
}

void LoginPenalty::succeeded(const AddressKey& address) {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(address);
  if (it == entries_.end()) return;
  order_.erase(it->second);
  entries_.erase(it);
}

std::size_t LoginPenalty::addresses() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace imapscope::guard
