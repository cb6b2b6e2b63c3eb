// The lookup cache: answers per user and password, kept as long as their kind allows,
// never the Unavailable ones, bounded by dropping the oldest.
#include "proxy/route/lookup_cache.hpp"

#include <gtest/gtest.h>

namespace imapscope::route {
namespace {

using namespace std::chrono_literals;
using Clock = LookupCache::Clock;

LoginRequest login(std::string user, std::string secret = "pw") {
  LoginRequest request;
  request.user = std::move(user);
  request.secret = std::move(secret);
  request.method = "plain";
  return request;
}

LookupResult routed(std::string host) {
  LookupResult result;
  result.status = LookupStatus::Routed;
  result.route.backend = Backend{std::move(host), 143};
  return result;
}

LookupResult with_status(LookupStatus status) {
  LookupResult result;
  result.status = status;
  result.message = "text";
  return result;
}

const guard::CredentialDigest kDigest({1, 2});

TEST(LookupCache, RoutedAnswersAreKeptForTheHitTime) {
  LookupCache cache({300s, 10s, 100}, kDigest);
  const auto t0 = Clock::time_point{} + 1000s;
  EXPECT_FALSE(cache.find(login("alice"), t0));
  cache.store(login("alice"), routed("10.0.0.1"), t0);
  const auto hit = cache.find(login("alice"), t0 + 299s);
  ASSERT_TRUE(hit);
  EXPECT_TRUE(hit->from_cache);
  EXPECT_EQ(hit->route.backend.host, "10.0.0.1");
  EXPECT_FALSE(cache.find(login("alice"), t0 + 300s));
  EXPECT_EQ(cache.size(), 0u);  // the stale one went when found stale
}

TEST(LookupCache, TheSecretIsPartOfTheKey) {
  LookupCache cache({300s, 10s, 100}, kDigest);
  const auto t0 = Clock::time_point{} + 1000s;
  cache.store(login("alice", "right"), routed("10.0.0.1"), t0);
  EXPECT_FALSE(cache.find(login("alice", "wrong"), t0));
  EXPECT_FALSE(cache.find(login("bob", "right"), t0));
  EXPECT_TRUE(cache.find(login("alice", "right"), t0));
}

TEST(LookupCache, RefusalsForTheMissTimeUnavailableNever) {
  LookupCache cache({300s, 10s, 100}, kDigest);
  const auto t0 = Clock::time_point{} + 1000s;
  cache.store(login("a"), with_status(LookupStatus::Refused), t0);
  cache.store(login("b"), with_status(LookupStatus::Unavailable), t0);
  ASSERT_TRUE(cache.find(login("a"), t0 + 9s));
  EXPECT_EQ(cache.find(login("a"), t0 + 9s)->message, "text");
  EXPECT_FALSE(cache.find(login("a"), t0 + 10s));
  EXPECT_FALSE(cache.find(login("b"), t0));
}

TEST(LookupCache, ZeroSecondsTurnsThatKindOff) {
  LookupCache cache({0s, 10s, 100}, kDigest);
  const auto t0 = Clock::time_point{} + 1000s;
  cache.store(login("a"), routed("10.0.0.1"), t0);
  cache.store(login("b"), with_status(LookupStatus::Refused), t0);
  EXPECT_FALSE(cache.find(login("a"), t0));
  EXPECT_TRUE(cache.find(login("b"), t0));
}

TEST(LookupCache, WhenFullTheOldestGoes) {
  LookupCache cache({300s, 10s, 3}, kDigest);
  const auto t0 = Clock::time_point{} + 1000s;
  for (const char* user : {"u1", "u2", "u3", "u4"}) cache.store(login(user), routed(user), t0);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.find(login("u1"), t0));
  EXPECT_TRUE(cache.find(login("u4"), t0));
  cache.store(login("u2"), routed("again"), t0);  // stored anew: the youngest now
  cache.store(login("u5"), routed("u5"), t0);
  EXPECT_FALSE(cache.find(login("u3"), t0));
  EXPECT_EQ(cache.find(login("u2"), t0)->route.backend.host, "again");
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace imapscope::route
