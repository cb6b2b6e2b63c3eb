// The guard's pure logic: address keys, admissions (totals, per address, eviction of
// the oldest), the penalty's doubling, its same-credentials exemption and expiry, the
// bounded tables, the refusal log's once-per-interval lines and the keyed digest.
#include <gtest/gtest.h>

#include <memory>

#include "proxy/guard/guard.hpp"

namespace imapscope::guard {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

AddressKey key(std::string_view text) {
  auto k = AddressKey::parse(text);
  EXPECT_TRUE(k) << text;
  return k.value_or(AddressKey{});
}

struct Evictee : Evictable {
  int evictions = 0;
  void evict() override { ++evictions; }
};

TEST(AddressKey, Ipv4PerAddressIpv6PerSlash64) {
  EXPECT_EQ(key("192.0.2.1").to_string(), "192.0.2.1");
  EXPECT_NE(key("192.0.2.1"), key("192.0.2.2"));
  EXPECT_EQ(key("::ffff:192.0.2.1"), key("192.0.2.1"));
  EXPECT_EQ(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::7"));
  EXPECT_NE(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
  EXPECT_EQ(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
  EXPECT_EQ(key("[::1]"), key("::1"));
  EXPECT_FALSE(AddressKey::parse("mail.example.org"));
  EXPECT_FALSE(AddressKey::parse("192.0.2.1:143"));
}

TEST(Admissions, TotalFullRefusesTheNewcomer) {
  Admissions a(SessionLimits{2, 10, 10});
  EXPECT_EQ(a.admit(1, key("192.0.2.1"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(2, key("192.0.2.2"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(3, key("192.0.2.3"), nullptr).refusal, Refusal::SessionsFull);
  a.logged_in(1);
  EXPECT_EQ(a.admit(4, key("192.0.2.3"), nullptr).refusal, Refusal::SessionsFull);  // logged in still counts
  a.ended(1);
  EXPECT_EQ(a.admit(5, key("192.0.2.3"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.counts().sessions, 2u);
}

TEST(Admissions, PerAddressCountsOnlySessionsNotLoggedIn) {
  Admissions a(SessionLimits{100, 100, 2});
  EXPECT_EQ(a.admit(1, key("127.0.0.3"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(2, key("127.0.0.3"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(3, key("127.0.0.3"), nullptr).refusal, Refusal::AddressFull);
  EXPECT_EQ(a.admit(4, key("127.0.0.4"), nullptr).refusal, Refusal::None);  // another address is not locked out
  a.logged_in(1);
  EXPECT_EQ(a.admit(5, key("127.0.0.3"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(6, key("2001:db8::1"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(7, key("2001:db8::2"), nullptr).refusal, Refusal::None);
  EXPECT_EQ(a.admit(8, key("2001:db8::3"), nullptr).refusal, Refusal::AddressFull);  // the same /64
  EXPECT_EQ(a.counts().prelogin, 5u);
}

TEST(Admissions, PreloginFullEvictsTheOldest) {
  Admissions a(SessionLimits{100, 2, 10});
  auto first = std::make_shared<Evictee>();
  auto second = std::make_shared<Evictee>();
  EXPECT_EQ(a.admit(1, key("192.0.2.1"), first).refusal, Refusal::None);
  EXPECT_EQ(a.admit(2, key("192.0.2.2"), second).refusal, Refusal::None);
  auto verdict = a.admit(3, key("192.0.2.3"), std::make_shared<Evictee>());
  EXPECT_EQ(verdict.refusal, Refusal::None);
  ASSERT_EQ(verdict.evicted, first);
  EXPECT_EQ(a.counts().prelogin, 2u);
  EXPECT_EQ(a.counts().sessions, 3u);  // the evicted one counts until it has ended
  a.ended(1);
  // A logged-in session is never evicted: the next oldest pre-login one goes.
  a.logged_in(2);
  verdict = a.admit(4, key("192.0.2.4"), nullptr);
  EXPECT_EQ(verdict.refusal, Refusal::None);
  EXPECT_EQ(verdict.evicted, nullptr);
  verdict = a.admit(5, key("192.0.2.5"), nullptr);
  EXPECT_NE(verdict.evicted, second);
  EXPECT_EQ(a.counts().prelogin, 2u);
}

TEST(Admissions, EvictionFreesTheAddressOfTheEvicted) {
  Admissions a(SessionLimits{100, 1, 1});
  EXPECT_EQ(a.admit(1, key("192.0.2.1"), std::make_shared<Evictee>()).refusal, Refusal::None);
  EXPECT_EQ(a.admit(2, key("192.0.2.1"), nullptr).refusal, Refusal::AddressFull);
  EXPECT_NE(a.admit(3, key("192.0.2.2"), nullptr).evicted, nullptr);
  EXPECT_EQ(a.admit(4, key("192.0.2.1"), nullptr).refusal, Refusal::None);  // 1 was evicted
}

TEST(Admissions, DefaultTotalFromTheDescriptorLimit) {
  EXPECT_EQ(sessions_for_descriptors(20'000, 25), (20'000u - 25 - 64 - 312) / 2);
  EXPECT_EQ(sessions_for_descriptors(1'024, 21), (1'024u - 21 - 64 - 16) / 2);
  EXPECT_EQ(sessions_for_descriptors(128, 21), (128u - 21 - 64 - 2) / 2);
  EXPECT_EQ(sessions_for_descriptors(48, 21), 1u);
}

TEST(LoginPenalty, DoublesFromTwoSecondsUpToFifteen) {
  LoginPenalty p(PenaltySettings{});
  EXPECT_EQ(p.penalty_for(0), 0ms);
  EXPECT_EQ(p.penalty_for(1), 2'000ms);
  EXPECT_EQ(p.penalty_for(2), 4'000ms);
  EXPECT_EQ(p.penalty_for(3), 8'000ms);
  EXPECT_EQ(p.penalty_for(4), 15'000ms);
  EXPECT_EQ(p.penalty_for(40), 15'000ms);
}

TEST(LoginPenalty, WaitCountsFromTheLastFailure) {
  LoginPenalty p(PenaltySettings{});
  const auto t0 = Clock::time_point{} + 1000s;
  const auto a = key("192.0.2.1");
  EXPECT_EQ(p.delay(a, t0), 0ms);
  auto f = p.failed(a, 11, t0);
  EXPECT_EQ(f.failures, 1u);
  EXPECT_FALSE(f.repeated);
  EXPECT_EQ(f.next_delay, 2'000ms);
  EXPECT_EQ(p.delay(a, t0), 2'000ms);
  EXPECT_EQ(p.delay(a, t0 + 500ms), 1'500ms);
  EXPECT_EQ(p.delay(a, t0 + 3s), 0ms);
  EXPECT_EQ(p.delay(key("192.0.2.2"), t0), 0ms);  // another address
  f = p.failed(a, 22, t0 + 3s);
  EXPECT_EQ(f.failures, 2u);
  EXPECT_EQ(p.delay(a, t0 + 3s), 4'000ms);
  p.succeeded(a);
  EXPECT_EQ(p.delay(a, t0 + 3s), 0ms);
  EXPECT_EQ(p.addresses(), 0u);
}

TEST(LoginPenalty, TheSameCredentialsAgainAreNotCounted) {
  LoginPenalty p(PenaltySettings{});
  const auto t0 = Clock::time_point{} + 1000s;
  const auto a = key("2001:db8::1");
  p.failed(a, 7, t0);
  const auto again = p.failed(a, 7, t0 + 2s);
  EXPECT_TRUE(again.repeated);
  EXPECT_EQ(again.failures, 1u);
  EXPECT_EQ(p.delay(key("2001:db8::2"), t0 + 2s), 2'000ms);  // same /64, same entry
  EXPECT_EQ(p.failed(a, 8, t0 + 4s).failures, 2u);
  EXPECT_EQ(p.failed(a, 7, t0 + 8s).failures, 3u);  // only the last failure's credentials are kept
}

TEST(LoginPenalty, ExpiresAfterAnHourWithoutFailures) {
  LoginPenalty p(PenaltySettings{});
  const auto t0 = Clock::time_point{} + 1000s;
  const auto a = key("192.0.2.1");
  p.failed(a, 1, t0);
  p.failed(a, 2, t0 + 1s);
  EXPECT_EQ(p.failed(a, 3, t0 + 1s + 3600s).failures, 1u);
  EXPECT_EQ(p.delay(a, t0 + 1s + 7200s), 0ms);
  EXPECT_EQ(p.addresses(), 0u);
}

TEST(LoginPenalty, BoundedTableDropsTheLeastRecentlyFailed) {
  PenaltySettings s;
  s.max_addresses = 2;
  LoginPenalty p(s);
  const auto t0 = Clock::time_point{} + 1000s;
  p.failed(key("192.0.2.1"), 1, t0);
  p.failed(key("192.0.2.2"), 1, t0 + 1ms);
  p.failed(key("192.0.2.1"), 2, t0 + 2ms);  // 1 is now the most recent
  p.failed(key("192.0.2.3"), 1, t0 + 3ms);
  EXPECT_EQ(p.addresses(), 2u);
  EXPECT_EQ(p.delay(key("192.0.2.2"), t0 + 3ms), 0ms);
  EXPECT_GT(p.delay(key("192.0.2.1"), t0 + 3ms), 3'000ms);
}

TEST(LoginPenalty, DisabledWaitsNever) {
  PenaltySettings s;
  s.enabled = false;
  LoginPenalty p(s);
  const auto t0 = Clock::time_point{} + 1000s;
  p.failed(key("192.0.2.1"), 1, t0);
  EXPECT_EQ(p.delay(key("192.0.2.1"), t0), 0ms);
}

TEST(RefusalLog, OneLinePerAddressAndIntervalWithTheCount) {
  RefusalLog log(10s, 100);
  const auto t0 = Clock::time_point{} + 1000s;
  const auto a = key("127.0.0.3");
  int immediate = 0;
  for (int i = 0; i < 10'000; ++i) immediate += log.note(a, "address_full", t0 + std::chrono::microseconds(i)).has_value();
  EXPECT_EQ(immediate, 1);
  EXPECT_TRUE(log.note(key("127.0.0.4"), "address_full", t0).has_value());
  EXPECT_TRUE(log.note(a, "sessions_full", t0).has_value());  // another reason
  EXPECT_TRUE(log.due(t0 + 5s).empty());
  auto lines = log.due(t0 + 11s);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].address, a);
  EXPECT_EQ(lines[0].reason, "address_full");
  EXPECT_EQ(lines[0].count, 9'999u);
  // Still refusing: summed again, no line at once.
  EXPECT_FALSE(log.note(a, "address_full", t0 + 12s).has_value());
  EXPECT_EQ(log.due(t0 + 22s).at(0).count, 1u);
  EXPECT_TRUE(log.due(t0 + 40s).empty());
  EXPECT_TRUE(log.note(a, "address_full", t0 + 41s).has_value());  // forgotten: logged at once again
}

TEST(RefusalLog, AddressesBeyondTheTableAreSummedTogether) {
  RefusalLog log(10s, 2);
  const auto t0 = Clock::time_point{} + 1000s;
  EXPECT_TRUE(log.note(key("192.0.2.1"), "address_full", t0));
  EXPECT_TRUE(log.note(key("192.0.2.2"), "address_full", t0));
  for (int i = 3; i < 200; ++i) {
    EXPECT_FALSE(log.note(key("192.0.2." + std::to_string(i)), "address_full", t0));
  }
  const auto lines = log.due(t0 + 10s);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_FALSE(lines[0].address);
  EXPECT_EQ(lines[0].count, 197u);
}

TEST(CredentialDigest, KeyedAndOrderSensitive) {
  const CredentialDigest one({1, 2});
  const CredentialDigest other({3, 4});
  const auto alice = one.fold(one.fold(0, "alice"), "secret");
  EXPECT_EQ(alice, one.fold(one.fold(0, "alice"), "secret"));
  EXPECT_NE(alice, one.fold(one.fold(0, "alice"), "secreT"));
  EXPECT_NE(alice, one.fold(one.fold(0, "secret"), "alice"));
  EXPECT_NE(alice, other.fold(other.fold(0, "alice"), "secret"));
  EXPECT_NE(one.fold(0, ""), one.fold(0, std::string_view("\0", 1)));
  // SipHash-2-4 reference vector (key 00..0f, message 00..0e: 0xa129ca6149be45e5),
  // with so_far carrying the first 8 message bytes.
  const CredentialDigest reference({0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL});
  EXPECT_EQ(reference.fold(0x0706050403020100ULL, std::string_view("\x08\x09\x0a\x0b\x0c\x0d\x0e", 7)),
            0xa129ca6149be45e5ULL);
  // Two random keys differ.
  EXPECT_NE(CredentialDigest().fold(0, "x"), CredentialDigest().fold(0, "x"));
}

}  // namespace
}  // namespace imapscope::guard
