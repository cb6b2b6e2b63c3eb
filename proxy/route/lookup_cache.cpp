#include "proxy/route/lookup_cache.hpp"

#include <functional>

namespace imapscope::route {

std::size_t LookupCache::KeyHash::operator()(const Key& key) const {
  return std::hash<std::string>()(key.user) ^ static_cast<std::size_t>(key.secret_a);
}

LookupCache::LookupCache(LookupCacheSettings settings, guard::CredentialDigest digest)
    : settings_(settings), digest_(digest) {}

LookupCache::Key LookupCache::key_of(const LoginRequest& request) const {
  Key key;
  key.user = request.user;
  // Two folds from different starting points: 128 bits, so that no other password
  // shares the digest by chance. The method goes in too: a token is not a password.
  const auto method = digest_.fold(0, request.method);
  key.secret_a = digest_.fold(digest_.fold(method, request.secret), "a");
  key.secret_b = digest_.fold(digest_.fold(method ^ 0x9e3779b97f4a7c15ULL, request.secret), "b");
  return key;
}

std::optional<LookupResult> LookupCache::find(const LoginRequest& request, Clock::time_point now) {
  const Key key = key_of(request);
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (now >= it->second.expires) {
    order_.erase(it->second.age);
    entries_.erase(it);
    return std::nullopt;
  }
  LookupResult result = it->second.result;
  result.from_cache = true;
  return result;
}

void LookupCache::store(const LoginRequest& request, const LookupResult& result, Clock::time_point now) {
  std::chrono::seconds keep{0};
  if (result.status == LookupStatus::Routed) keep = settings_.hit;
  if (result.status == LookupStatus::Refused) keep = settings_.miss;
  if (keep <= std::chrono::seconds::zero() || settings_.max_entries == 0) return;
  Key key = key_of(request);
  std::lock_guard lock(mutex_);
  if (const auto it = entries_.find(key); it != entries_.end()) {
    order_.erase(it->second.age);
    entries_.erase(it);
  }
  while (entries_.size() >= settings_.max_entries && !order_.empty()) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(key);
  Entry entry{result, now + keep, std::prev(order_.end())};
  entry.result.from_cache = false;
  entries_.emplace(std::move(key), std::move(entry));
}

void LookupCache::clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
  order_.clear();
}

std::size_t LookupCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace imapscope::route
