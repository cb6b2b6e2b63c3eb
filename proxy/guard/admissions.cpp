#include "proxy/guard/admissions.hpp"

namespace imapscope::guard {

std::size_t sessions_for_descriptors(std::uint64_t descriptor_limit, std::uint64_t in_use) {
  const std::uint64_t reserve = in_use + 64 + descriptor_limit / 64;
  if (descriptor_limit <= reserve + 2) return 1;
  return static_cast<std::size_t>((descriptor_limit - reserve) / 2);
}

std::string_view refusal_name(Refusal refusal) {
  switch (refusal) {
    case Refusal::None: return "none";
    case Refusal::SessionsFull: return "sessions_full";
    case Refusal::AddressFull: return "address_full";
  }
  return "none";
}

Admissions::Verdict Admissions::admit(std::uint64_t session, const AddressKey& address,
                                      std::shared_ptr<Evictable> handle) {
  Verdict verdict;
  std::lock_guard lock(mutex_);
  if (sessions_ >= limits_.max_sessions) {
    verdict.refusal = Refusal::SessionsFull;
    return verdict;
  }
  auto count = per_address_.find(address);
  if (count != per_address_.end() && count->second >= limits_.max_prelogin_per_address) {
    verdict.refusal = Refusal::AddressFull;
    return verdict;
  }
  if (prelogin_.size() >= limits_.max_prelogin && !prelogin_.empty()) {
    verdict.evicted = std::move(prelogin_.front().handle);
    forget_prelogin(prelogin_.begin());
    count = per_address_.find(address);  // the evicted one may have been the last of its address
  }
  ++sessions_;
  if (count == per_address_.end()) count = per_address_.emplace(address, 0).first;
  ++count->second;
  prelogin_.push_back(PreLogin{session, address, std::move(handle)});
  by_session_[session] = std::prev(prelogin_.end());
  return verdict;
}

void Admissions::forget_prelogin(std::list<PreLogin>::iterator it) {
  auto count = per_address_.find(it->address);
  if (count != per_address_.end() && --count->second == 0) per_address_.erase(count);
  by_session_.erase(it->session);
  prelogin_.erase(it);
}

void Admissions::logged_in(std::uint64_t session) {
  std::lock_guard lock(mutex_);
  const auto it = by_session_.find(session);
  if (it != by_session_.end()) forget_prelogin(it->second);
}

void Admissions::ended(std::uint64_t session) {
  std::shared_ptr<Evictable> released;  // destroyed outside the lock
  std::lock_guard lock(mutex_);
  if (sessions_ > 0) --sessions_;
  const auto it = by_session_.find(session);
  if (it == by_session_.end()) return;
  released = std::move(it->second->handle);
  forget_prelogin(it->second);
}

Admissions::Counts Admissions::counts() const {
  std::lock_guard lock(mutex_);
  return Counts{sessions_, prelogin_.size()};
}

}  // namespace imapscope::guard
