// Answers of the lookup service kept for a while, so that a client that logs in every
// few seconds (a phone polling, a farm of them) doesn't cost an HTTP exchange each
// time. An answer is kept per user and secret, because an auth_http service checks the
// password: a wrong one must not find the right one's route. The secret itself is never
// kept: a keyed digest of it (guard::CredentialDigest, 128 bits from two keyed
// SipHash folds under a per-process key) stands for it.
//
// Routed answers are kept for `hit`, Refused ones for `miss`, Unavailable ones never
// (the service was down or wrong: ask again next time). 0 turns that kind off. At most
// max_entries answers: when full, the oldest stored goes. Time is passed in; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "proxy/guard/credential_digest.hpp"
#include "proxy/route/backend.hpp"

namespace imapscope::route {

struct LookupCacheSettings {
  std::chrono::seconds hit{300};
  std::chrono::seconds miss{10};
  std::size_t max_entries = 100000;
};

class LookupCache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LookupCache(LookupCacheSettings settings, guard::CredentialDigest digest = guard::CredentialDigest());

  // The kept answer for this user and secret (from_cache set), if still fresh.
  std::optional<LookupResult> find(const LoginRequest& request, Clock::time_point now);
  // Keeps the answer as its kind allows (see above).
  void store(const LoginRequest& request, const LookupResult& result, Clock::time_point now);
  void clear();
  std::size_t size() const;

 private:
  struct Key {
    std::string user;
    std::uint64_t secret_a = 0, secret_b = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };
  struct Entry {
    LookupResult result;
    Clock::time_point expires;
    std::list<Key>::iterator age;  // its place in order_
  };
  Key key_of(const LoginRequest& request) const;

  const LookupCacheSettings settings_;
  const guard::CredentialDigest digest_;
  mutable std::mutex mutex_;
  std::unordered_map<Key, Entry, KeyHash> entries_;
  std::list<Key> order_;  // oldest stored first
};

}  // namespace imapscope::route
