// Transcripts from real Session traffic: text without literal payloads, hashes,
// credentials never written, selection, and the writer's bounds.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include <openssl/evp.h>

#include "proxy/inspect/encoding.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/inspect/stream_text.hpp"
#include "proxy/session/session.hpp"
#include "tests/support/observed_session.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::inspect {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string temp_dir() {
  static int n = 0;
  const auto dir = fs::path(::testing::TempDir()) / ("imapscope-transcripts-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(n++));
  fs::remove_all(dir);
  imapscope::testing::remove_at_exit(dir.string());
  return dir.string();
}

// Everything written to the folder, as one string, and as events.
std::string folder_text(const std::string& dir) {
  std::string all;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path());
    std::stringstream s;
    s << in.rdbuf();
    all += s.str();
  }
  return all;
}

std::vector<json> events(const std::string& dir) {
  std::vector<json> out;
  std::istringstream lines(folder_text(dir));
  for (std::string line; std::getline(lines, line);) out.push_back(json::parse(line));
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) { return a["t"] < b["t"]; });
  return out;
}

using Recorded = imapscope::testing::ObservedSession;

InspectorOptions options(const std::string& dir) {
  InspectorOptions o;
  o.transcripts.emplace().dir = dir;
  return o;
}

TEST(StreamText, DropsPayloadsAndHashesThem) {
  StreamText t;
  t.add("* 1 FETCH (BODY[] {5}\r\nhel", true);
  t.add("lo)\r\n", true);
  EXPECT_EQ(t.take_text(), "* 1 FETCH (BODY[] {5})");
  const auto literals = t.take_literals();
  ASSERT_EQ(literals.size(), 1u);
  EXPECT_EQ(literals[0].size, 5u);
  // sha256("hello")
  EXPECT_EQ(literals[0].sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  t.add("a LOGIN {5}\r\nalice {6}\r\nsecret\r\n", false);
  EXPECT_EQ(t.take_text(), "a LOGIN {5} {6}");
  EXPECT_EQ(t.take_literals()[1].sha256, "");
}

TEST(StreamText, KeepsTheHeadOfBodiesUpToTheCap) {
  StreamText t(4);
  t.add("* 1 FETCH (BODY[] {10}\r\n0123", true);
  t.add("456789)\r\n", true);
  EXPECT_EQ(t.take_text(), "* 1 FETCH (BODY[] {10})");
  EXPECT_EQ(t.take_literals()[0].head, "0123");
  t.add("a LOGIN {6}\r\nsecret {2}\r\npw\r\n", false);  // credentials: nothing kept
  for (const auto& l : t.take_literals()) EXPECT_EQ(l.head, "");
}

TEST(Transcripts, BodiesAreWrittenUpToTheCapAndNeverCredentials) {
  const auto dir = temp_dir();
  {
    auto o = options(dir);
    o.body_cap = 8;
    Inspector transcripts(o);
    Recorded r(transcripts, 1);
    r.server("* OK ready\r\n");
    r.client("a1 LOGIN {5}\r\n");
    r.server("+ OK\r\n");
    r.client("alice {12}\r\n");
    r.server("+ OK\r\n");
    r.client("Body-Secret7\r\n");
    r.server("a1 OK Logged in\r\n");
    r.client("a2 FETCH 1 BODY[]\r\n");
    r.server("* 1 FETCH (BODY[] {12}\r\nHello, world)\r\na2 OK done\r\n");
    r.close();
    transcripts.writer()->flush();
  }
  const auto text = folder_text(dir);
  EXPECT_EQ(text.find("Body-Secret7"), std::string::npos);
  EXPECT_EQ(text.find("Qm9keS1TZWNyZXQ3"), std::string::npos);  // base64 of it
  bool seen = false;
  for (const auto& e : events(dir)) {
    if (e.value("name", "") != "FETCH") continue;
    EXPECT_EQ(e["literals"][0]["data"], "SGVsbG8sIHc=");  // "Hello, w": the first 8 bytes
    EXPECT_EQ(e["literals"][0]["truncated"], true);
    seen = true;
  }
  EXPECT_TRUE(seen);
}

TEST(Transcripts, CredentialsNeverReachTheFile) {
  const auto dir = temp_dir();
  {
    Inspector transcripts(options(dir));
    std::uint64_t id = 1;
    auto session = [&](auto&& script) {
      Recorded r(transcripts, id++);
      r.server("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2] ready\r\n");
      script(r);
      r.close();
    };
    session([](Recorded& r) {  // quoted
      r.client("a1 LOGIN \"alice\" \"Quoted-Secret-1\"\r\n");
      r.server("a1 OK Logged in\r\n");
    });
    session([](Recorded& r) {  // synchronising literals
      r.client("a1 LOGIN {5}\r\n");
      r.server("+ OK\r\n");
      r.client("alice {15}\r\n");
      r.server("+ OK\r\n");
      r.client("Literal-Secret2\r\n");
      r.server("a1 OK Logged in\r\n");
    });
    session([](Recorded& r) {  // PLAIN with SASL-IR: base64("\0alice\0Plain-IR-Secret3")
      r.client("a1 AUTHENTICATE PLAIN AGFsaWNlAFBsYWluLUlSLVNlY3JldDM=\r\n");
      r.server("a1 OK Logged in\r\n");
    });
    session([](Recorded& r) {  // PLAIN without SASL-IR
      r.client("a1 AUTHENTICATE PLAIN\r\n");
      r.server("+ \r\n");
      r.client("AGFsaWNlAFBsYWluLVNlY3JldDQ=\r\n");  // "\0alice\0Plain-Secret4"
      r.server("a1 OK Logged in\r\n");
    });
    session([](Recorded& r) {  // LOGIN mechanism: user, then password, each a SASL line
      r.client("a1 AUTHENTICATE LOGIN\r\n");
      r.server("+ VXNlcm5hbWU6\r\n");
      r.client("YWxpY2U=\r\n");  // alice
      r.server("+ UGFzc3dvcmQ6\r\n");
      r.client("TG9naW4tU2VjcmV0NQ==\r\n");  // Login-Secret5
      r.server("a1 OK Logged in\r\n");
    });
    session([](Recorded& r) {  // XOAUTH2 with SASL-IR: "user=alice\1auth=Bearer Oauth-Token6\1\1"
      r.client("a1 AUTHENTICATE XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciBPYXV0aC1Ub2tlbjYBAQ==\r\n");
      r.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    });
    session([](Recorded& r) {  // a cancelled exchange
      r.client("a1 AUTHENTICATE PLAIN\r\n");
      r.server("+ \r\n");
      r.client("*\r\n");
      r.server("a1 BAD Authentication aborted by client.\r\n");
      r.client("a2 NOOP\r\n");
      r.server("a2 OK NOOP completed.\r\n");
    });
    transcripts.writer()->flush();
  }
  const auto text = folder_text(dir);
  for (const char* secret : {"Quoted-Secret-1", "Literal-Secret2", "AGFsaWNlAFBsYWluLUlSLVNlY3JldDM=", "Plain-IR-Secret3",
                             "AGFsaWNlAFBsYWluLVNlY3JldDQ=", "Plain-Secret4", "TG9naW4tU2VjcmV0NQ==", "Login-Secret5",
                             "YWxpY2U=", "Oauth-Token6", "dXNlcj1hbGljZQFhdXRoPUJlYXJlciBPYXV0aC1Ub2tlbjYBAQ=="}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << secret;
  }
  // The user names, hashed by default: the same user, the same label, in every session.
  const auto alice = user_label("alice", UserNames::Hashed, options(dir).label_key);
  std::size_t users = 0;
  for (const auto& e : events(dir)) {
    if (e.value("event", "") == "user") {
      EXPECT_EQ(e["user"], alice);
      ++users;
    }
  }
  EXPECT_EQ(users, 6u);
  EXPECT_NE(text.find("\"a2 NOOP\""), std::string::npos);  // after the exchange, commands are written again
  EXPECT_EQ(text.find("\"alice\""), std::string::npos);
}

TEST(Transcripts, SelectionByUserKeepsOnlyThatUser) {
  const auto dir = temp_dir();
  {
    auto o = options(dir);
    o.selection.users = {"alice"};
    Inspector transcripts(o);
    for (const char* user : {"alice", "bob", "ALICE"}) {
      Recorded r(transcripts, 1);
      r.server("* OK ready\r\n");
      r.client(std::string("a1 LOGIN ") + user + " pw\r\na2 SELECT INBOX\r\n");
      r.server("a1 OK Logged in\r\na2 OK done\r\n");
      r.close();
    }
    {
      Recorded r(transcripts, 9);  // never logs in: undecided, dropped
      r.server("* OK ready\r\n");
      r.close();
    }
    transcripts.writer()->flush();
  }
  std::size_t starts = 0, selects = 0;
  for (const auto& e : events(dir)) {
    if (e.value("event", "") == "start") ++starts;
    if (e.value("command", "") == "SELECT") ++selects;
  }
  EXPECT_EQ(starts, 2u);  // alice and ALICE, with what came before the login
  EXPECT_EQ(selects, 2u);
}

TEST(Transcripts, SelectionByAddressAndSample) {
  Selection s;
  s.addresses = {*util::Cidr::parse("192.0.2.0/24"), *util::Cidr::parse("2001:db8::/32")};
  EXPECT_TRUE(s.admits_connection("192.0.2.77:1234", 0));
  EXPECT_FALSE(s.admits_connection("198.51.100.1:1234", 0));
  EXPECT_TRUE(s.admits_connection("2001:db8::1:993", 0));
  EXPECT_FALSE(s.admits_connection("2001:db9::1:993", 0));
  s.sample = 0.25;
  EXPECT_TRUE(s.admits_connection("192.0.2.1:1", 0.1));
  EXPECT_FALSE(s.admits_connection("192.0.2.1:1", 0.3));
  EXPECT_FALSE(util::Cidr::parse("192.0.2.0/33"));
  EXPECT_FALSE(util::Cidr::parse("mail.example.org"));
}

TEST(TranscriptWriter, RotatesBoundsTheFolderAndDropsWhenFull) {
  const auto dir = temp_dir();
  WriterOptions o;
  o.dir = dir;
  o.max_file_bytes = 1000;
  o.max_total_bytes = 5000;
  {
    TranscriptWriter writer(o);
    for (int i = 0; i < 500; ++i) writer.write(std::string(90, 'x'));
    writer.flush();
    EXPECT_EQ(writer.dropped(), 0u);
  }
  std::uint64_t total = 0;
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    total += entry.file_size();
    ++files;
  }
  EXPECT_GT(files, 2u);
  EXPECT_LE(total, 5000u + 1000u);  // the bound, plus the file being written
  // A queue that can't take more: lines are dropped and counted, write() never waits.
  o.max_queued_bytes = 100;
  TranscriptWriter small(o);
  std::uint64_t accepted = 0;
  for (int i = 0; i < 1000; ++i) accepted += small.write(std::string(60, 'y')) ? 1 : 0;
  small.flush();
  EXPECT_EQ(accepted + small.dropped(), 1000u);
  EXPECT_EQ(small.written(), accepted);
}

TEST(UserLabel, KeyedStableAndNotAHashOfTheName) {
  const std::string key = "0123456789abcdef0123456789abcdef", other = "fedcba9876543210fedcba9876543210";
  const auto alice = user_label("alice", UserNames::Hashed, key);
  EXPECT_EQ(alice.size(), 2u + 16u);
  EXPECT_EQ(alice.rfind("u:", 0), 0u);
  EXPECT_EQ(alice.find_first_not_of("0123456789abcdef", 2), std::string::npos);
  EXPECT_EQ(user_label("ALICE", UserNames::Hashed, key), alice);  // the name's case is not the user
  EXPECT_NE(user_label("bob", UserNames::Hashed, key), alice);
  EXPECT_NE(user_label("alice", UserNames::Hashed, other), alice);  // another key, another label
  // Nothing of the plain SHA-256 of the name (what a list of addresses would find).
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest("alice", 5, digest, &length, EVP_sha256(), nullptr);
  EXPECT_EQ(hex(digest, length).find(alice.substr(2, 8)), std::string::npos);
  EXPECT_EQ(user_label("alice", UserNames::Clear, key), "alice");
  EXPECT_EQ(user_label("alice", UserNames::Redacted, key), "***");
}

TEST(TranscriptWriter, OwnerOnlyFilesThatNeverFollowAPlantedLink) {
  const auto dir = temp_dir();
  const auto victim = dir + "-victim";
  { std::ofstream(victim) << "untouched\n"; }
  const auto old_umask = ::umask(0);
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms::owner_all);
  // A link at every name the first file could get in the next minute.
  const auto now = std::time(nullptr);
  for (std::time_t t = now; t < now + 60; ++t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char name[64];
    std::strftime(name, sizeof name, "/imapscope-%Y%m%dT%H%M%SZ-000000.jsonl", &tm);
    fs::create_symlink(victim, dir + name);
  }
  {
    WriterOptions o;
    o.dir = dir;
    TranscriptWriter writer(o);
    writer.write("{\"line\":1}");
    writer.flush();
  }
  ::umask(old_umask);
  std::ifstream in(victim);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "untouched\n");
  std::size_t written = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_symlink()) continue;
    struct stat st {};
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << entry.path();
    EXPECT_NE(entry.path().filename().string().find("-000000-"), std::string::npos) << entry.path();
    ++written;
  }
  EXPECT_EQ(written, 1u);
  fs::remove_all(dir);
  fs::remove(victim);
}

TEST(TranscriptWriter, RefusesAFolderOthersCanWrite) {
  const auto dir = temp_dir();
  fs::create_directory(dir);
  fs::permissions(dir, fs::perms::all);
  WriterOptions o;
  o.dir = dir;
  EXPECT_THROW(TranscriptWriter{o}, std::runtime_error);
  fs::remove_all(dir);
  // Missing: made owner-only whatever the umask.
  const auto old_umask = ::umask(0);
  { TranscriptWriter writer(o); }
  ::umask(old_umask);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace imapscope::inspect
