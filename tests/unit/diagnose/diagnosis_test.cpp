// The detectors, driven through a real Session (both decoders) with scripted
// client and server bytes and a clock the test moves: each behaviour yields its
// finding, a well-behaved session none.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "proxy/diagnose/diagnostics.hpp"
#include "proxy/diagnose/findings.hpp"
#include "proxy/session/session.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::diagnose {
namespace {

using Clock = std::chrono::steady_clock;

struct Seen {
  std::string name, detail;
  std::uint64_t bytes;
};

// Who watches besides the diagnostics: records the findings.
class Recorder final : public session::Telemetry {
 public:
  std::vector<Seen> findings;
  std::unique_ptr<session::Observer> session_started(const session::SessionStart&) override {
    struct Observer final : session::Observer {
      explicit Observer(std::vector<Seen>& sink) : out(sink) {}
      void command(const imap::Command&) override {}
      void command_done(std::string_view, imap::Verb, bool, imap::Status, bool) override {}
      void idle_started() override {}
      void idle_keepalive() override {}
      void literal_bytes(bool, std::uint64_t) override {}
      void protocol_error(bool, imap::ErrorCode) override {}
      void client_identified(const identify::ClientInfo&, bool) override {}
      void finding(const session::FindingReport& r) override {
        EXPECT_FALSE(r.meaning.empty());
        EXPECT_FALSE(r.fix.empty());
        out.push_back({std::string(r.name), std::string(r.detail), r.bytes});
      }
      std::vector<Seen>& out;
    };
    return std::make_unique<Observer>(findings);
  }
  void session_ended(std::string_view, std::string_view, session::CloseReason, double) override {}
  void bytes(bool, std::uint64_t) override {}
  void tls_handshake(bool, bool, std::string_view, bool) override {}
  void upstream_connected(bool, double) override {}
  void reload(bool) override {}
};

struct Proxy {
  explicit Proxy(Options options = {}) : recorder(std::make_shared<Recorder>()),
      diagnostics(options, recorder, [this] { return now; }) {}
  std::shared_ptr<Recorder> recorder;
  Clock::time_point now = Clock::now();
  Diagnostics diagnostics;
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& f : recorder->findings) out.push_back(f.name);
    return out;
  }
};

// One session: bytes in, the session's output ignored (the detectors see the events).
struct Conversation {
  Conversation(Proxy& owner, std::string address = "192.0.2.7:5000") : proxy(owner) {
    observer = proxy.diagnostics.session_started(session::SessionStart{"l", "none", ++ids, address});
    session.emplace(session::SessionSettings{});
    session->set_observer(observer.get());
    server("* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n");
  }
  ~Conversation() { close(session::CloseReason::ClientClosed); }
  void client(std::string_view bytes) {
    session->feed_client(bytes);
    EXPECT_TRUE(bytes.empty()) << bytes;
    session->to_server().clear();
  }
  void server(std::string_view bytes) {
    session->feed_server(bytes);
    EXPECT_TRUE(bytes.empty()) << bytes;
    session->to_client().clear();
  }
  void log_in(const std::string& user = "alice") {
    client("a1 LOGIN " + user + " secret\r\n");
    server("a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
  }
  void select(const std::string& mailbox, std::uint32_t exists, std::uint32_t uidvalidity) {
    client("s1 SELECT " + mailbox + "\r\n");
    server("* " + std::to_string(exists) + " EXISTS\r\n* OK [UIDVALIDITY " + std::to_string(uidvalidity) +
           "] UIDs valid\r\ns1 OK [READ-WRITE] Select completed\r\n");
  }
  void close(session::CloseReason reason) {
    if (!observer) return;
    observer->session_closed(reason, {});
    session.reset();
    observer.reset();
  }
  void wait(std::chrono::seconds s) { proxy.now += s; }

  Proxy& proxy;
  std::unique_ptr<session::Observer> observer;
  std::optional<session::Session> session;
  static inline std::uint64_t ids = 0;
};

std::string fetch_flags(std::uint32_t n, bool deleted) {
  std::string out;
  for (std::uint32_t i = 1; i <= n; ++i) {
    out += "* " + std::to_string(i) + " FETCH (UID " + std::to_string(i + 100) + " FLAGS (\\Seen" +
           (deleted ? " \\Deleted" : "") + "))\r\n";
  }
  return out;
}

// What mutt sends without a header cache: flags and the headers it shows (about
// header_bytes a message), as a literal.
std::string fetch_headers(std::uint32_t n, std::size_t header_bytes) {
  std::string out;
  const std::string header = "Subject: " + std::string(header_bytes - 11, 'x') + "\r\n";
  for (std::uint32_t i = 1; i <= n; ++i) {
    out += "* " + std::to_string(i) + " FETCH (UID " + std::to_string(i + 100) +
           " FLAGS (\\Seen) BODY[HEADER.FIELDS (SUBJECT)] {" + std::to_string(header.size()) + "}\r\n" + header + ")\r\n";
  }
  return out;
}

void idle_for(Conversation& r, const std::string& tag, std::chrono::seconds before_keepalive,
              std::chrono::seconds after_keepalive) {
  r.client(tag + " IDLE\r\n");
  r.server("+ idling\r\n");
  r.wait(before_keepalive);
  r.server("* OK Still here\r\n");
  r.wait(after_keepalive);
  r.client("DONE\r\n");
  r.server(tag + " OK Idle completed\r\n");
}

TEST(Diagnosis, AWellBehavedSessionFindsNothing) {
  Proxy p;
  Conversation r(p);
  r.log_in();
  r.select("INBOX", 3, 7);
  r.client("f1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5)\r\n");
  r.server(fetch_flags(1, false) + "f1 OK done\r\n");
  for (int i = 0; i < 3; ++i) {
    r.client("i" + std::to_string(i) + " IDLE\r\n");
    r.server("+ idling\r\n");
    r.wait(std::chrono::seconds(200));
    r.server("* OK Still here\r\n");
    r.wait(std::chrono::seconds(600));
    r.client("DONE\r\n");
    r.server("i" + std::to_string(i) + " OK Idle completed\r\n");
  }
  r.client("n1 NOOP\r\n");
  r.server("n1 OK done\r\n");
  r.client("z1 LOGOUT\r\n");
  r.server("* BYE bye\r\nz1 OK Logout completed\r\n");
  r.close(session::CloseReason::ServerClosed);
  EXPECT_TRUE(p.names().empty()) << p.recorder->findings.front().name;
}

// What the real clients do every day, with the default thresholds: no finding.
TEST(Diagnosis, OrdinaryClientsFindNothingWithTheDefaults) {
  Proxy p;
  {
    // Thunderbird: up to 5 connections, each IDLE in the folder it has selected; the
    // INBOX opened on two of them within 10 s, its 5 messages swept each time (1.6 KB).
    std::vector<std::unique_ptr<Conversation>> tb;
    for (const char* folder : {"INBOX", "INBOX", "Sent", "Drafts", "Lists"}) {
      auto& r = *tb.emplace_back(std::make_unique<Conversation>(p));
      r.log_in();
      r.select(folder, 5, 1);
      r.client("f1 UID FETCH 1:* (FLAGS)\r\n");
      r.server(fetch_flags(5, false) + "f1 OK done\r\n");
      r.wait(std::chrono::seconds(2));
      r.client("i1 IDLE\r\n");
      r.server("+ idling\r\n");
    }
    // A sixth Thunderbird folder, opened on a connection that left IDLE for it.
    auto& inbox = *tb.front();
    inbox.client("DONE\r\n");
    inbox.server("i1 OK Idle completed\r\n");
    inbox.select("Archive", 5, 1);
    inbox.client("i2 IDLE\r\n");
    inbox.server("+ idling\r\n");
    // The user reads mail on one connection: now and then right after a keepalive,
    // mostly not; each time a FETCH in between.
    auto& lists = *tb.back();
    lists.client("DONE\r\n");
    lists.server("i1 OK Idle completed\r\n");
    for (int i = 0; i < 8; ++i) {
      idle_for(lists, "w" + std::to_string(i), std::chrono::seconds(120), std::chrono::seconds(i % 2 ? 1 : 40));
      lists.client("f UID FETCH 9 BODY.PEEK[]\r\n");
      lists.server("f OK done\r\n");
      // Meanwhile Dovecot's keepalives reach the other connections in IDLE.
      for (std::size_t c = 0; c + 1 < tb.size(); ++c) tb[c]->server("* OK Still here\r\n");
    }
  }
  // mbsync run every few minutes: a 2,000-message folder's UIDs and flags each time
  // (about 90 KB, UID FETCH 1:<the last UID it knows>), three times within the hour.
  for (int run = 0; run < 3; ++run) {
    Conversation r(p);
    r.log_in("bob");
    r.select("Archive", 2000, 1);
    r.client("f1 UID FETCH 1:2100 (UID FLAGS)\r\n");
    r.server(fetch_flags(2000, false) + "f1 OK done\r\n");
    r.client("z1 LOGOUT\r\n");
    r.server("* BYE\r\nz1 OK done\r\n");
    r.wait(std::chrono::seconds(300));
  }
  {
    // mutt without IDLE: the INBOX re-opened on new mail, a NOOP at its keepalive
    // (300 s) for two hours, a clean-up of 200 messages flagged \Deleted and left
    // for the next purge, a missing folder's STATUS retried at each check.
    Conversation r(p);
    r.log_in("carol");
    for (int i = 0; i < 2; ++i) {
      r.select("INBOX", 7, 1);
      r.client("f FETCH 1:7 (UID FLAGS INTERNALDATE RFC822.SIZE)\r\n");
      r.server(fetch_flags(7, false) + "f OK done\r\n");
      r.wait(std::chrono::seconds(5));
    }
    for (int i = 0; i < 24; ++i) {
      r.wait(std::chrono::seconds(300));
      r.client("n NOOP\r\n");
      r.server("n OK done\r\n");
      if (i % 2 == 0) {
        r.client("s STATUS Gone (MESSAGES)\r\n");
        r.server("s NO [NONEXISTENT] Mailbox doesn't exist: Gone\r\n");
      }
    }
    r.select("Trash", 800, 1);
    r.client("d STORE 1:200 +FLAGS.SILENT (\\Deleted)\r\n");
    r.server("d OK done\r\n");
    r.client("z1 LOGOUT\r\n");
    r.server("* BYE\r\nz1 OK done\r\n");
  }
  // A changed password: Thunderbird's 5 connections fail at once, the user mistypes
  // the new one 3 times.
  for (int i = 0; i < 8; ++i) {
    Conversation r(p, "203.0.113.5:" + std::to_string(5000 + i));
    r.client("a1 LOGIN dave old-password\r\n");
    r.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  }
  EXPECT_TRUE(p.names().empty()) << p.recorder->findings.front().name << ": " << p.recorder->findings.front().detail;
}

TEST(Diagnosis, UidvalidityChangeAcrossSessionsAndRestarts) {
  const std::string dir = imapscope::testing::make_temp_dir("imapscope-diagnose-");
  Options options;
  options.state_file = std::string(dir) + "/state";
  {
    Proxy p(options);
    { Conversation r(p); r.log_in(); r.select("INBOX", 3, 100); }
    { Conversation r(p); r.log_in(); r.select("inbox", 3, 100); }      // INBOX in any case; same value
    { Conversation r(p); r.log_in("bob"); r.select("INBOX", 3, 555); } // another user's INBOX
    EXPECT_TRUE(p.names().empty());
    { Conversation r(p); r.log_in(); r.select("INBOX", 3, 200); }
    ASSERT_EQ(p.names(), std::vector<std::string>{"uidvalidity_changed"});
    EXPECT_NE(p.recorder->findings[0].detail.find("100 in an earlier session"), std::string::npos);
  }
  // After a restart the file remembers 200; the change to 300 is seen.
  Proxy p(options);
  { Conversation r(p); r.log_in(); r.select("Archive", 1, 9); }
  { Conversation r(p); r.log_in(); r.select("INBOX", 3, 300); }
  EXPECT_EQ(p.names(), std::vector<std::string>{"uidvalidity_changed"});
  std::remove(options.state_file.c_str());
  rmdir(dir.c_str());
}

TEST(Diagnosis, StateFileIsOwnerOnlyAndALinkAtItsNameIsReplaced) {
  const std::string dir = imapscope::testing::make_temp_dir("imapscope-diagnose-");
  const std::string victim = std::string(dir) + "/victim";
  { std::ofstream(victim) << "untouched\n"; }
  Options options;
  options.state_file = std::string(dir) + "/state";
  ASSERT_EQ(symlink(victim.c_str(), options.state_file.c_str()), 0);
  const auto old_umask = umask(0);
  {
    Proxy p(options);
    { Conversation r(p); r.log_in(); r.select("INBOX", 3, 100); }
  }
  umask(old_umask);
  struct stat st {};
  ASSERT_EQ(lstat(options.state_file.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  std::ifstream in(victim);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "untouched\n");
  std::remove(options.state_file.c_str());
  std::remove(victim.c_str());
  rmdir(dir.c_str());
}

TEST(Diagnosis, FullResyncOfALargeMailboxOrMegabytesOfTheSameOneAgain) {
  Proxy p;  // the defaults
  {
    Conversation r(p);
    r.log_in();
    r.select("Big", 20000, 1);
    r.client("f1 FETCH 1:* (UID FLAGS)\r\n");
    r.server(fetch_flags(20000, false) + "f1 OK done\r\n");
    ASSERT_EQ(p.names(), std::vector<std::string>{"full_resync"});
    EXPECT_GT(p.recorder->findings[0].bytes, 20000u * 30);
    EXPECT_NE(p.recorder->findings[0].detail.find("flags of 20000 messages"), std::string::npos);
    // A folder of 2,000 swept again soon: about 90 KB, what mbsync does at each run.
    for (int i = 0; i < 2; ++i) {
      r.select("Small", 2000, 1);
      r.client("f2 UID FETCH 1:* (FLAGS)\r\n");
      r.server(fetch_flags(2000, false) + "f2 OK done\r\n");
    }
    EXPECT_EQ(p.names().size(), 1u);
  }
  // mutt without a header cache re-opening a 3,000-message folder: 1.4 MB of
  // headers again, in another session 10 minutes later.
  {
    Conversation r(p);
    r.log_in();
    r.select("Lists", 3000, 1);
    r.client("f3 FETCH 1:3000 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    r.server(fetch_headers(3000, 400) + "f3 OK done\r\n");
    EXPECT_EQ(p.names().size(), 1u);  // the first sweep is the sync every client does
  }
  for (int again = 0; again < 2; ++again) {
    Conversation r(p);
    r.log_in();
    r.select("Lists", 3000, 1);
    r.wait(std::chrono::seconds(600));
    r.client("f3 FETCH 1:3000 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n");
    r.server(fetch_headers(3000, 400) + "f3 OK done\r\n");
  }
  // Once per window and mailbox: the third sweep adds nothing.
  ASSERT_EQ(p.names(), (std::vector<std::string>{"full_resync", "full_resync"}));
  {
    // mbsync's UID FETCH 1:N is a sweep when every message comes back: of a 20,000-
    // message folder, a finding; of part of one (new messages only), none.
    Conversation r(p);
    r.log_in("bob");
    r.select("Huge", 20000, 1);
    r.client("f4 UID FETCH 1:20100 (UID FLAGS)\r\n");
    r.server(fetch_flags(20000, false) + "f4 OK done\r\n");
    ASSERT_EQ(p.names().size(), 3u);
    EXPECT_NE(p.recorder->findings[2].detail.find("Huge: flags of 20000 messages"), std::string::npos);
    r.select("Huge", 40000, 1);
    r.client("f5 UID FETCH 1:30000 (UID FLAGS)\r\n");
    r.server(fetch_flags(20000, false) + "f5 OK done\r\n");
    EXPECT_EQ(p.names().size(), 3u);
  }
  const auto detail = p.recorder->findings[1].detail;
  EXPECT_NE(detail.find("Lists: flags of 3000 messages"), std::string::npos) << detail;
  EXPECT_NE(detail.find("previous full sweep of this mailbox was 10 min ago"), std::string::npos) << detail;
  EXPECT_NE(detail.find("2 sweeps within 60 min"), std::string::npos) << detail;
  EXPECT_GT(p.recorder->findings[1].bytes, 1u << 20);
}

TEST(Diagnosis, FullResyncThresholdsAreSettings) {
  Options options;
  options.thresholds.resync_repeat_min_messages = 5;
  options.thresholds.resync_repeat_min_bytes = 100;
  Proxy p(options);
  for (int i = 0; i < 2; ++i) {
    Conversation r(p);
    r.log_in();
    r.select("INBOX", 5, 1);
    r.client("f1 UID FETCH 1:* (FLAGS)\r\n");
    r.server(fetch_flags(5, false) + "f1 OK done\r\n");
  }
  EXPECT_EQ(p.names(), std::vector<std::string>{"full_resync"});
}

TEST(Diagnosis, IdleChurnKeepaliveWakeupsAndIdleWithoutSelect) {
  Proxy p;  // the defaults
  Conversation r(p);
  r.log_in();
  r.client("i0 IDLE\r\n");  // nothing selected
  r.server("+ idling\r\n");
  r.client("DONE\r\n");
  r.server("i0 OK done\r\n");
  EXPECT_EQ(p.names(), std::vector<std::string>{"idle_without_select"});
  r.select("INBOX", 1, 1);
  // A user at work: IDLE ended soon to do something else is not churn.
  for (int i = 0; i < 12; ++i) {
    r.client("w" + std::to_string(i) + " IDLE\r\n");
    r.server("+ idling\r\n");
    r.wait(std::chrono::seconds(20));
    r.client("DONE\r\n");
    r.server("w" + std::to_string(i) + " OK done\r\n");
    r.client("f1 UID FETCH 5 BODY.PEEK[]\r\n");
    r.server("f1 OK done\r\n");
  }
  // Four wake-ups at a keepalive, then one DONE at another time: the count starts again.
  for (int i = 0; i < 4; ++i) idle_for(r, "k" + std::to_string(i), std::chrono::seconds(30), std::chrono::seconds(1));
  idle_for(r, "k4", std::chrono::seconds(30), std::chrono::seconds(20));
  EXPECT_EQ(p.names(), std::vector<std::string>{"idle_without_select"});
  // Woken by every keepalive, and soon, and IDLE again at once: the 5th in a row is a
  // wake-up pattern; the 10th IDLE re-issued after a short one is churn.
  for (int i = 1; i <= 11; ++i) idle_for(r, "i" + std::to_string(i), std::chrono::seconds(30), std::chrono::seconds(1));
  EXPECT_EQ(p.names(), (std::vector<std::string>{"idle_without_select", "keepalive_wakeups", "idle_churn"}));
  EXPECT_NE(p.recorder->findings[1].detail.find("5 times in a row"), std::string::npos) << p.recorder->findings[1].detail;
  EXPECT_NE(p.recorder->findings[2].detail.find("10 times"), std::string::npos) << p.recorder->findings[2].detail;
}

TEST(Diagnosis, ConnectionsPerFolderAndPerUser) {
  Proxy p;  // the defaults: 6 folders; 8 and 10 sessions
  std::vector<std::unique_ptr<Conversation>> runs;
  for (const char* folder : {"INBOX", "Sent", "Lists", "Work", "Family", "Receipts"}) {
    auto& r = *runs.emplace_back(std::make_unique<Conversation>(p));
    r.log_in();
    r.select(folder, 1, 1);
    r.client("i1 IDLE\r\n");
    r.server("+ idling\r\n");
    // Thunderbird's five are its ordinary state.
    if (runs.size() == 5) {
      EXPECT_TRUE(p.names().empty());
    }
  }
  EXPECT_EQ(p.names(), std::vector<std::string>{"connection_per_folder"});
  EXPECT_NE(p.recorder->findings[0].detail.find("6 connections"), std::string::npos);
  runs.push_back(std::make_unique<Conversation>(p));
  runs.back()->log_in();
  EXPECT_EQ(p.names().size(), 1u);  // 7
  runs.push_back(std::make_unique<Conversation>(p));
  runs.back()->log_in();
  EXPECT_EQ(p.names(), (std::vector<std::string>{"connection_per_folder", "user_connection_limit"}));  // 8
  // The server's own refusal says the same.
  Conversation refused(p);
  refused.client("a1 LOGIN alice secret\r\n");
  refused.server("a1 NO [LIMIT] Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)\r\n");
  EXPECT_EQ(p.names().back(), "user_connection_limit");
  EXPECT_NE(p.recorder->findings.back().detail.find("mail_max_userip_connections"), std::string::npos);
}

TEST(Diagnosis, ErrorLoopsAndLoginFailureStorms) {
  Proxy p;  // the defaults: 10 refusals in 10 minutes; 10 failed logins in 5
  {
    Conversation r(p);
    r.log_in();
    r.select("INBOX", 1, 1);
    for (int i = 0; i < 10; ++i) {
      r.client("x IDLE\r\n");
      r.server("+ idling\r\n");
      r.client("x NOOP\r\n");  // not DONE
      r.server("x BAD Expected DONE.\r\n");
      if (i == 8) {
        EXPECT_TRUE(p.names().empty());
      }
    }
    ASSERT_EQ(p.names(), std::vector<std::string>{"error_loop"});
    EXPECT_NE(p.recorder->findings[0].detail.find("\"IDLE\" refused (BAD) 10 times"), std::string::npos)
        << p.recorder->findings[0].detail;
  }
  for (int i = 0; i < 11; ++i) {
    Conversation r(p, "198.51.100.9:" + std::to_string(4000 + i));
    r.client("a1 LOGIN mallory guess" + std::to_string(i) + "\r\n");
    r.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    r.wait(std::chrono::seconds(5));
  }
  Conversation other(p, "198.51.100.10:4000");  // another address: its own count
  other.client("a1 LOGIN alice wrong\r\n");
  other.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  ASSERT_EQ(p.names(), (std::vector<std::string>{"error_loop", "login_failure_storm"}));  // once per window
  const auto& detail = p.recorder->findings[1].detail;
  EXPECT_NE(detail.find("10 failed logins from 198.51.100.9"), std::string::npos) << detail;
  EXPECT_EQ(detail.find("guess"), std::string::npos);  // never a password
}

TEST(Diagnosis, DeletedButNotExpunged) {
  Proxy p;  // the defaults: 500
  {
    Conversation r(p);
    r.log_in();
    r.select("INBOX", 600, 1);
    r.client("f1 FETCH 1:600 (FLAGS)\r\n");
    r.server(fetch_flags(500, true) + "f1 OK done\r\n");
    EXPECT_EQ(p.names(), std::vector<std::string>{"deleted_build_up"});
  }
  {
    Conversation r(p);
    r.log_in();
    r.select("Trash", 900, 1);
    r.client("s2 STORE 1:499 +FLAGS.SILENT (\\Deleted)\r\ns3 UID STORE 7 +FLAGS (\\Deleted)\r\n");
    r.server("s2 OK done\r\n* 500 FETCH (FLAGS (\\Deleted) UID 7)\r\ns3 OK done\r\n");
    r.client("z1 LOGOUT\r\n");
    r.server("* BYE\r\nz1 OK done\r\n");
  }
  ASSERT_EQ(p.names().size(), 2u);
  EXPECT_NE(p.recorder->findings[1].detail.find("flagged 500 messages"), std::string::npos) << p.recorder->findings[1].detail;
  {
    Conversation r(p);  // the same, purged: nothing
    r.log_in();
    r.select("Trash", 900, 1);
    r.client("s2 STORE 1:800 +FLAGS.SILENT (\\Deleted)\r\ne1 EXPUNGE\r\n");
    r.server("s2 OK done\r\ne1 OK done\r\n");
  }
  EXPECT_EQ(p.names().size(), 2u);
}

TEST(Diagnosis, PollingWhereIdleIsOffered) {
  Proxy p;  // the defaults: 30 in a row, each within a minute
  Conversation r(p);
  r.log_in();
  r.select("INBOX", 1, 1);
  for (int i = 0; i < 30; ++i) {
    if (i == 29) {
      EXPECT_TRUE(p.names().empty());
    }
    r.wait(std::chrono::seconds(50));
    r.client("p STATUS INBOX (MESSAGES UNSEEN)\r\n");
    r.server("* STATUS INBOX (MESSAGES 1 UNSEEN 0)\r\np OK done\r\n");
  }
  EXPECT_EQ(p.names(), std::vector<std::string>{"polling_instead_of_idle"});
}

TEST(Diagnosis, InactivityTimeoutsByWhoClosed) {
  Proxy p;
  {
    Conversation r(p);
    r.log_in();
    r.wait(std::chrono::seconds(1800));
    r.server("* BYE Disconnected for inactivity.\r\n");
    r.close(session::CloseReason::ServerClosed);
  }
  {
    Conversation r(p);
    r.log_in();
    r.wait(std::chrono::seconds(1900));
    r.close(session::CloseReason::IdleTimeout);
  }
  {
    Conversation r(p);  // closed soon after its last word: not a timeout
    r.log_in();
    r.wait(std::chrono::seconds(5));
    r.close(session::CloseReason::ClientClosed);
  }
  ASSERT_EQ(p.names(), (std::vector<std::string>{"inactivity_timeout", "inactivity_timeout"}));
  EXPECT_NE(p.recorder->findings[0].detail.find("the server closed it (its inactivity timeout) after 30 min of silence"),
            std::string::npos) << p.recorder->findings[0].detail;
  EXPECT_NE(p.recorder->findings[1].detail.find("imapscope's idle timeout"), std::string::npos);
}

TEST(Diagnosis, TheDocsShowWhatEachFindingMeansAndWhatFixesIt) {
  std::ifstream in(IMAPSCOPE_SOURCE_DIR "/docs/diagnostics.md");
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(readme.empty());
  for (std::size_t i = 0; i < kFindingKinds; ++i) {
    const auto& text = finding_text(static_cast<FindingKind>(i));
    EXPECT_NE(readme.find("**`" + std::string(text.name) + "`**"), std::string::npos) << text.name;
    EXPECT_NE(readme.find(text.meaning), std::string::npos) << text.name << " meaning";
    EXPECT_NE(readme.find(text.fix), std::string::npos) << text.name << " fix";
  }
}

}  // namespace
}  // namespace imapscope::diagnose
