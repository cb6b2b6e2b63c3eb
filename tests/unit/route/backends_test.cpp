#include "proxy/route/backends.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace imapscope::route {
namespace {

using namespace std::chrono_literals;
const auto kT0 = std::chrono::system_clock::time_point{} + 1'000'000s;

Backend backend(std::uint16_t port) { return Backend{"127.0.0.1", port}; }

BackendHealth health_of(const Backends& pool, const Backend& b) { return pool.find(b.name())->health; }

TEST(Backends, UncheckedBackendIsUnknownAndAdmitted) {
  Backends pool;
  pool.add(backend(1143), true);
  EXPECT_EQ(pool.admit(backend(1143)), Admission::Unknown);
  EXPECT_EQ(health_of(pool, backend(1143)), BackendHealth::Unknown);
  EXPECT_EQ(pool.snapshot().at(0).last_check, std::chrono::system_clock::time_point{});
}

TEST(Backends, NeverUpGoesDownAtFirstFailure) {
  Backends pool(64, 3, 1);
  pool.add(backend(1143), true);
  EXPECT_EQ(pool.check_result(backend(1143), false, "connection refused", "", kT0), BackendHealth::Down);
  EXPECT_EQ(pool.admit(backend(1143)), Admission::Down);
  const auto s = pool.snapshot().at(0);
  EXPECT_EQ(s.last_error, "connection refused");
  EXPECT_EQ(s.last_check, kT0);
}

TEST(Backends, FallAndRise) {
  Backends pool(64, 2, 2);
  const auto b = backend(1143);
  pool.add(b, true);
  EXPECT_EQ(pool.check_result(b, true, "", "IMAP4rev1", kT0), std::nullopt);  // 1 of rise 2
  EXPECT_EQ(health_of(pool, b), BackendHealth::Unknown);
  EXPECT_EQ(pool.check_result(b, true, "", "IMAP4rev1", kT0 + 10s), BackendHealth::Up);
  EXPECT_EQ(pool.admit(b), Admission::Ok);
  // One failure is a blip once it has been up: fall is 2.
  EXPECT_EQ(pool.check_result(b, false, "timed out", "", kT0 + 20s), std::nullopt);
  EXPECT_EQ(pool.admit(b), Admission::Ok);
  EXPECT_EQ(pool.find(b.name())->last_error, "timed out");
  // A good check in between starts the count again.
  EXPECT_EQ(pool.check_result(b, true, "", "", kT0 + 30s), std::nullopt);
  EXPECT_EQ(pool.find(b.name())->last_error, "");
  EXPECT_EQ(pool.check_result(b, false, "timed out", "", kT0 + 40s), std::nullopt);
  EXPECT_EQ(pool.check_result(b, false, "timed out", "", kT0 + 50s), BackendHealth::Down);
  // Back after rise good checks.
  EXPECT_EQ(pool.check_result(b, true, "", "", kT0 + 60s), std::nullopt);
  EXPECT_EQ(pool.admit(b), Admission::Down);
  EXPECT_EQ(pool.check_result(b, true, "", "", kT0 + 70s), BackendHealth::Up);
  // An empty capability list keeps the last one known.
  EXPECT_EQ(pool.find(b.name())->capabilities, "IMAP4rev1");
}

TEST(Backends, DrainingRefusesNewSessionsWhateverTheHealth) {
  Backends pool;
  const auto b = backend(1143);
  pool.add(b, true);
  pool.check_result(b, true, "", "", kT0);
  EXPECT_TRUE(pool.set_draining(b.name(), true));
  EXPECT_EQ(pool.admit(b), Admission::Draining);
  EXPECT_TRUE(pool.snapshot().at(0).draining);
  EXPECT_TRUE(pool.set_draining("127.0.0.1:1143", false));
  EXPECT_EQ(pool.admit(b), Admission::Ok);
  EXPECT_FALSE(pool.set_draining("127.0.0.1:9999", true));
}

TEST(Backends, SessionsCounted) {
  Backends pool;
  const auto b = backend(1143);
  pool.add(b, true);
  pool.session_started(b);
  pool.session_started(b);
  pool.session_ended(b);
  EXPECT_EQ(pool.snapshot().at(0).sessions, 1U);
  pool.session_ended(b);
  pool.session_ended(b);  // never below zero
  EXPECT_EQ(pool.snapshot().at(0).sessions, 0U);
}

TEST(Backends, LearntBackendsAreBoundedAndTheRestIsOther) {
  Backends pool(2);
  pool.add(backend(1), true);
  pool.add(backend(2), false);
  pool.add(backend(3), false);
  pool.add(backend(4), false);  // past the bound
  pool.add(backend(2), false);  // known already: no new place taken
  EXPECT_EQ(pool.snapshot().size(), 3U);
  EXPECT_EQ(pool.metric_label(backend(3)), "127.0.0.1:3");
  EXPECT_EQ(pool.metric_label(backend(4)), "other");
  EXPECT_EQ(pool.admit(backend(4)), Admission::Unknown);
  EXPECT_FALSE(pool.check_result(backend(4), false, "refused", "", kT0).has_value());
  pool.session_started(backend(4));
  pool.session_started(backend(5));
  EXPECT_EQ(pool.untracked_sessions(), 2U);
  pool.session_ended(backend(4));
  EXPECT_EQ(pool.untracked_sessions(), 1U);
  EXPECT_EQ(pool.to_check().size(), 3U);
  // A learnt backend the map then names is configured: its learnt place is free again.
  pool.add(backend(2), true);
  pool.add(backend(6), false);
  EXPECT_EQ(pool.metric_label(backend(6)), "127.0.0.1:6");
}

TEST(Backends, SnapshotListsConfiguredFirst) {
  Backends pool;
  pool.add(backend(2), false);
  pool.add(backend(1), true);
  const auto s = pool.snapshot();
  ASSERT_EQ(s.size(), 2U);
  EXPECT_EQ(s[0].backend.name(), "127.0.0.1:1");
  EXPECT_TRUE(s[0].configured);
  EXPECT_FALSE(s[1].configured);
}

TEST(Backends, PreloginCapabilitiesKeepWhatTheProxySpeaks) {
  EXPECT_EQ(prelogin_capabilities("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
                                  "AUTH=PLAIN AUTH=SCRAM-SHA-256 auth=xoauth2 AUTH=OAUTHBEARER AUTH=LOGIN "
                                  "LOGINDISABLED AUTH=GSSAPI  IMAP4rev1"),
            (std::vector<std::string>{"IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE", "LITERAL+",
                                      "AUTH=PLAIN", "auth=xoauth2", "AUTH=OAUTHBEARER", "AUTH=LOGIN"}));
  EXPECT_TRUE(prelogin_capabilities("").empty());
}

TEST(Backends, SharedCapabilitiesOfTheUpBackends) {
  Backends pool(64, 1, 1);
  pool.add(backend(1), true);
  pool.add(backend(2), true);
  pool.add(backend(3), true);
  EXPECT_EQ(pool.shared_capabilities(), "");  // none up yet
  pool.check_result(backend(1), true, "", "IMAP4rev1 SASL-IR ID IDLE STARTTLS AUTH=PLAIN AUTH=LOGIN", kT0);
  EXPECT_EQ(pool.shared_capabilities(), "IMAP4rev1 SASL-IR ID IDLE AUTH=PLAIN AUTH=LOGIN");
  pool.check_result(backend(2), true, "", "imap4rev1 ID AUTH=PLAIN IDLE LITERAL+", kT0);
  EXPECT_EQ(pool.shared_capabilities(), "IMAP4rev1 ID IDLE AUTH=PLAIN");
  // A down backend's list doesn't count.
  pool.check_result(backend(3), false, "refused", "", kT0);
  EXPECT_EQ(pool.shared_capabilities(), "IMAP4rev1 ID IDLE AUTH=PLAIN");
  pool.check_result(backend(2), false, "refused", "", kT0 + 10s);
  EXPECT_EQ(pool.shared_capabilities(), "IMAP4rev1 SASL-IR ID IDLE AUTH=PLAIN AUTH=LOGIN");
}

TEST(Backends, SafeFromSeveralThreads) {
  Backends pool(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (std::uint16_t i = 0; i < 200; ++i) {
        const auto b = backend(static_cast<std::uint16_t>(1000 + (i % 20)));
        pool.add(b, false);
        pool.session_started(b);
        (void)pool.admit(b);
        pool.check_result(b, (i + t) % 3 != 0, "x", "IMAP4rev1", kT0);
        (void)pool.snapshot();
        (void)pool.shared_capabilities();
        pool.session_ended(b);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(pool.snapshot().size(), 8U);
  EXPECT_EQ(pool.untracked_sessions(), 0U);
  for (const auto& s : pool.snapshot()) EXPECT_EQ(s.sessions, 0U);
}

}  // namespace
}  // namespace imapscope::route
