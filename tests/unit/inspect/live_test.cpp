// The live view and on-demand captures from real Session traffic: what the session
// table says, the bounded event ring and its sequence numbers, and captures that
// start mid-session (with the backlog), match by user / client / address, and stop.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/inspect/inspector.hpp"
#include "tests/support/observed_session.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::inspect {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Recorded = imapscope::testing::ObservedSession;

std::string temp_dir() {
  static int n = 0;
  const auto dir = fs::path(::testing::TempDir()) / ("imapscope-live-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(n++));
  fs::remove_all(dir);
  imapscope::testing::remove_at_exit(dir.string());
  return dir.string();
}

std::vector<json> written(const std::string& dir) {
  std::vector<json> out;
  if (!fs::exists(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path());
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  }
  return out;
}

// Options with transcripts on but no session selected by the config: only captures write.
InspectorOptions captures_only(const std::string& dir) {
  InspectorOptions o;
  o.transcripts.emplace().dir = dir;
  o.selection.sample = 0;
  return o;
}

void log_in(Recorded& r, const std::string& user) {
  r.server("* OK ready\r\n");
  r.client("a1 LOGIN " + user + " secret-pw\r\n");
  r.server("a1 OK Logged in\r\n");
}

TEST(Live, TheTableFollowsTheSession) {
  InspectorOptions o;
  o.user_names = UserNames::Clear;
  Inspector inspector(o);
  Recorded r(inspector, 7, "192.0.2.5:4000");
  log_in(r, "alice");
  r.client("a2 ID (\"name\" \"Thunderbird\" \"version\" \"128.3\")\r\n");
  r.server("* ID NIL\r\na2 OK done\r\n");
  r.client("a3 SELECT \"Sent Items\"\r\n");
  r.server("* 3 EXISTS\r\na3 OK [READ-WRITE] done\r\n");
  auto s = inspector.live()->find(7)->summary(now_us());
  EXPECT_EQ(s["user"], "alice");
  EXPECT_EQ(s["state"], "selected");
  EXPECT_EQ(s["mailbox"], "Sent Items");
  EXPECT_EQ(s["last_command"], "SELECT");
  EXPECT_EQ(s["commands"], 3);
  EXPECT_EQ(s["client"]["family"], "thunderbird");
  EXPECT_EQ(s["client"]["version"], "128.3");
  EXPECT_EQ(s["client_address"], "192.0.2.5:4000");
  EXPECT_GT(s["bytes"]["from_client"], 60);
  r.client("a4 IDLE\r\n");
  r.server("+ idling\r\n");
  EXPECT_EQ(inspector.live()->find(7)->summary(now_us())["state"], "idle");
  r.client("DONE\r\n");
  r.server("a4 OK done\r\n");
  r.client("a5 SELECT nosuch\r\n");
  r.server("a5 NO Mailbox doesn't exist\r\n");
  s = inspector.live()->find(7)->summary(now_us());
  EXPECT_EQ(s["state"], "authenticated");  // a failed SELECT leaves nothing selected
  EXPECT_EQ(s["mailbox"], "");
  r.close();
  EXPECT_EQ(inspector.live()->find(7)->summary(now_us())["close_reason"], "client_closed");
  const auto dump = s.dump();
  EXPECT_EQ(dump.find("secret-pw"), std::string::npos);
}

TEST(Live, EventsAreRedactedBoundedAndNumbered) {
  InspectorOptions o;
  o.live_limits.events = 10;
  Inspector inspector(o);
  Recorded r(inspector, 1);
  log_in(r, "alice");
  for (int i = 0; i < 20; ++i) {
    r.client("n" + std::to_string(i) + " NOOP\r\n");
    r.server("n" + std::to_string(i) + " OK done\r\n");
  }
  const auto live = inspector.live()->find(1);
  std::uint64_t last = 0;
  const auto all = live->events_after(0, last);
  ASSERT_EQ(all.size(), 10u);  // the ring keeps the newest
  EXPECT_GE(last, 44u);        // start, greeting, login and its answer, 40 NOOP lines...
  EXPECT_NE(all.back().find("n19 OK"), std::string::npos);
  const auto newest = last;
  EXPECT_EQ(live->events_after(newest - 2, last).size(), 2u);
  EXPECT_TRUE(live->events_after(newest, last).empty());
  // Packed (the session went into IDLE), they read back the same.
  live->pack_events();
  EXPECT_EQ(live->events_after(0, last), all);
  EXPECT_EQ(live->events_after(newest - 2, last), std::vector<std::string>(all.end() - 2, all.end()));
  // The login's secret was in no event, even when the ring still had it.
  Recorded early(inspector, 2);
  log_in(early, "bob");
  for (const auto& line : inspector.live()->find(2)->events_after(0, last)) {
    EXPECT_EQ(line.find("secret-pw"), std::string::npos) << line;
  }
}

TEST(Live, ClosedSessionsStayBrieflyThenGo) {
  InspectorOptions o;
  o.live_limits.recent_closed = 2;
  Inspector inspector(o);
  for (std::uint64_t id = 1; id <= 4; ++id) {
    Recorded r(inspector, id);
    r.server("* OK ready\r\n");
    r.close();
  }
  EXPECT_TRUE(inspector.live()->active().empty());
  ASSERT_EQ(inspector.live()->recent().size(), 2u);
  EXPECT_EQ(inspector.live()->recent().back()->id(), 4u);
  EXPECT_EQ(inspector.live()->find(1), nullptr);
}

TEST(Captures, ARunningSessionIsWrittenFromItsBacklogOn) {
  const auto dir = temp_dir();
  {
    Inspector inspector(captures_only(dir));
    Recorded alice(inspector, 1), bob(inspector, 2);
    log_in(alice, "alice");
    log_in(bob, "bob");
    alice.client("a2 NOOP\r\n");
    alice.server("a2 OK done\r\n");
    inspector.writer()->flush();
    EXPECT_TRUE(written(dir).empty());  // nothing selected yet
    inspector.captures().start({{"user", "Alice"}, {"duration_s", 60}}, now_us());
    alice.client("a3 SELECT INBOX\r\n");
    alice.server("a3 OK done\r\n");
    bob.client("b3 SELECT INBOX\r\n");
    bob.server("b3 OK done\r\n");
    EXPECT_EQ(inspector.live()->find(1)->summary(now_us())["capture"], 1);
    alice.close();
    bob.close();
    inspector.writer()->flush();
  }
  const auto events = written(dir);
  std::set<std::uint64_t> sessions;
  bool start = false, backlog_noop = false, select = false, marker = false;
  for (const auto& e : events) {
    sessions.insert(e["s"].get<std::uint64_t>());
    start |= e.value("event", "") == "start";
    marker |= e.value("event", "") == "capture" && e["backlog"] >= 5;
    backlog_noop |= e.value("text", "") == "a2 NOOP";
    select |= e.value("text", "") == "a3 SELECT INBOX";
  }
  EXPECT_EQ(sessions, std::set<std::uint64_t>{1});
  EXPECT_TRUE(start && backlog_noop && select && marker);
}

TEST(Captures, NewSessionsMatchByClientAndAddressAndStopWhenTheCaptureStops) {
  const auto dir = temp_dir();
  std::uint64_t capture = 0;
  {
    Inspector inspector(captures_only(dir));
    capture = inspector.captures().start({{"client", "thunderbird"}, {"address", "192.0.2.0/24"}}, now_us()).id;
    Recorded inside(inspector, 1, "192.0.2.9:5000"), outside(inspector, 2, "198.51.100.9:5000");
    for (auto* r : {&inside, &outside}) {
      log_in(*r, "carol");
      r->client("t2 ID (\"name\" \"Thunderbird\" \"version\" \"128.3\")\r\n");
      r->server("t2 OK done\r\n");
    }
    inside.client("t3 NOOP\r\n");
    inside.server("t3 OK done\r\n");
    EXPECT_TRUE(inspector.captures().stop(capture));
    inside.client("t4 LIST \"\" *\r\n");
    inside.server("t4 OK done\r\n");
    inside.close();
    outside.close();
    inspector.writer()->flush();
    EXPECT_FALSE(inspector.captures().stop(capture));
  }
  bool noop = false, list = false, ended = false;
  for (const auto& e : written(dir)) {
    EXPECT_EQ(e["s"], 1);
    noop |= e.value("text", "") == "t3 NOOP";
    list |= e.value("text", "").starts_with("t4 LIST");
    ended |= e.value("event", "") == "capture_end";
  }
  EXPECT_TRUE(noop);
  EXPECT_TRUE(ended);
  EXPECT_FALSE(list);  // written only while the capture ran
}

TEST(Captures, RequestsAreCheckedAndCapturesExpire) {
  Captures c;
  const std::int64_t t0 = 1'000'000'000;
  EXPECT_THROW(c.start(json::object(), t0), std::invalid_argument);                       // nothing named
  EXPECT_THROW(c.start({{"user", "a"}, {"duration", 5}}, t0), std::invalid_argument);     // unknown key
  EXPECT_THROW(c.start({{"address", "mail.example.org"}}, t0), std::invalid_argument);    // not an address
  EXPECT_THROW(c.start({{"user", "a"}, {"duration_s", -1}}, t0), std::invalid_argument);
  EXPECT_THROW(c.start({{"user", 5}}, t0), std::invalid_argument);
  const auto capture = c.start({{"user", "a"}, {"duration_s", 10}}, t0);
  const auto generation = c.generation();
  const std::string a = "a";
  EXPECT_TRUE(c.match({"127.0.0.1", &a, nullptr}, t0 + 1));
  EXPECT_FALSE(c.match({"127.0.0.1", nullptr, nullptr}, t0 + 1));  // user not known yet
  EXPECT_TRUE(c.active(capture.id, t0 + 9'000'000));
  EXPECT_FALSE(c.active(capture.id, t0 + 10'000'000));
  EXPECT_NE(c.generation(), generation);  // sessions notice the expiry
  EXPECT_TRUE(c.list(t0 + 10'000'000).empty());
}

}  // namespace
}  // namespace imapscope::inspect
