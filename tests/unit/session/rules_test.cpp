// Session playbooks with rules: what the target client sees rewritten, and that
// everyone else gets the server's bytes untouched.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "proxy/session/session.hpp"
#include "tests/unit/policy/rules_fixture.hpp"

namespace imapscope::session {
namespace {

using policy::testing::store_with;

struct Playbook {
  explicit Playbook(const policy::RuleStore& rules, bool compress_pass_through = false)
      : session(settings(rules, compress_pass_through)) {}
  explicit Playbook(const SessionSettings& settings) : session(settings) {}
  static SessionSettings settings(const policy::RuleStore& rules, bool compress_pass_through) {
    SessionSettings s;
    s.client_leg.tls = true;
    s.client_leg.compress_offered = s.client_leg.compress_pass_through = compress_pass_through;
    s.rules = &rules;
    return s;
  }
  std::string server(std::string_view bytes) {
    session.feed_server(bytes);
    left_server = std::string(bytes);
    return take(session.to_client());
  }
  std::string client(std::string_view bytes) {
    session.feed_client(bytes);
    left_client = std::string(bytes);
    return take(session.to_server());
  }
  std::string to_client() { return take(session.to_client()); }
  static std::string take(std::string& s) {
    std::string out;
    out.swap(s);
    return out;
  }
  // Greeting, ID naming the client, LOGIN: the session is authenticated and identified.
  void log_in_as(std::string_view id_name) {
    EXPECT_EQ(server("* OK ready\r\n"), "* OK ready\r\n");
    const std::string id = "a1 ID (\"name\" \"" + std::string(id_name) + "\" \"version\" \"6.400\")\r\n";
    EXPECT_EQ(client(id), id);
    server("* ID NIL\r\na1 OK ID completed\r\n");
    client("a2 LOGIN bob secret\r\n");
    server("a2 OK Logged in\r\n");
  }

  Session session;
  std::string left_server;
  std::string left_client;
};

constexpr const char* kKeepalive = R"js([{
  "name": "drop-keepalive", "description": "wakes the phone",
  "match": {"direction": "server", "client": ["thunderbird_android"], "state": ["idle"],
            "kind": ["untagged_status"], "status": ["OK"], "text": "^\\* OK Still here$"},
  "actions": {"drop": true}}])js";

TEST(SessionRules, DropsTheIdleKeepaliveForTheTargetClientOnly) {
  auto rules = store_with(kKeepalive);
  for (const bool target : {true, false}) {
    Playbook p(*rules);
    p.log_in_as(target ? "K-9 Mail" : "SomeOtherMailer");
    EXPECT_EQ(p.session.client().family, target ? "thunderbird_android" : "other");
    p.client("a3 SELECT INBOX\r\n");
    p.server("* 3 EXISTS\r\na3 OK [READ-WRITE] Select completed\r\n");
    EXPECT_EQ(p.client("a4 IDLE\r\n"), "a4 IDLE\r\n");
    EXPECT_EQ(p.server("+ idling\r\n"), "+ idling\r\n");
    const std::string keepalive = "* OK Still here\r\n";
    EXPECT_EQ(p.server(keepalive + "* 4 EXISTS\r\n" + keepalive), target ? "* 4 EXISTS\r\n" : keepalive + "* 4 EXISTS\r\n" + keepalive);
    EXPECT_EQ(p.client("DONE\r\n"), "DONE\r\n");
    // Outside IDLE the same line is not dropped.
    EXPECT_EQ(p.server("a4 OK Idle completed\r\n" + keepalive), "a4 OK Idle completed\r\n" + keepalive);
    EXPECT_EQ(p.session.rule_hits().size(), target ? 1u : 0u);
    if (target) {
      EXPECT_EQ(p.session.rule_hits()[0].second, 2u);
    }
  }
}

// The session's clock in the thinning test.
std::chrono::steady_clock::time_point test_now{};
std::chrono::steady_clock::time_point test_clock() { return test_now; }

TEST(SessionRules, ThinsKeepalivesToOnePerInterval) {
  auto rules = store_with(R"js([{
    "name": "thin-keepalive", "description": "one keepalive per 15 minutes",
    "match": {"direction": "server", "client": ["thunderbird_android"], "state": ["idle"],
              "kind": ["untagged_status"], "status": ["OK"], "text": "^\\* OK Still here$"},
    "actions": {"thin_keepalives_s": 900}}])js");
  SessionSettings settings = Playbook::settings(*rules, false);
  settings.clock = &test_clock;
  Playbook p(settings);
  p.log_in_as("K-9 Mail");
  p.client("a3 SELECT INBOX\r\n");
  p.server("* 3 EXISTS\r\na3 OK [READ-WRITE] Select completed\r\n");
  p.client("a4 IDLE\r\n");
  p.server("+ idling\r\n");
  const std::string keepalive = "* OK Still here\r\n";
  std::string seen;
  for (int minute = 2; minute <= 40; minute += 2) {  // Dovecot's default: every 2 minutes
    test_now += std::chrono::minutes(2);
    seen += p.server(keepalive);
    if (minute == 20) seen += p.server("* 4 EXISTS\r\n");  // news always passes
  }
  // 20 keepalives in 40 minutes: the first, then one per 15 minutes (at 2, 18, 34).
  EXPECT_EQ(seen, keepalive + keepalive + "* 4 EXISTS\r\n" + keepalive);
}

TEST(SessionRules, CompressIsPassedThroughOnlyWhereNoRuleCanAct) {
  // Rules edit plaintext: a client they target gets the proxy's own COMPRESS, so the
  // proxy keeps a plaintext stream to edit; anyone else shares the server's.
  auto rules = store_with(kKeepalive);
  for (const bool target : {true, false}) {
    Playbook p(*rules, true);
    p.log_in_as(target ? "K-9 Mail" : "SomeOtherMailer");
    p.client("a3 CAPABILITY\r\n");
    p.server("* CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE\r\na3 OK done\r\n");
    EXPECT_EQ(p.client("a4 COMPRESS DEFLATE\r\n"), target ? "" : "a4 COMPRESS DEFLATE\r\n");
    EXPECT_EQ(p.to_client(), target ? "a4 OK DEFLATE active\r\n" : "");
    EXPECT_EQ(p.session.client_compress_requested(), target);
    if (!target) {
      p.server("a4 OK Begin compression.\r\n");
      EXPECT_TRUE(p.session.pass_through_accepted());
    }
  }
}

TEST(SessionRules, AnswersACommandWithoutForwardingItAndKeepsPipelinedOnesInOrder) {
  auto rules = store_with(R"js([{
    "name": "answer-xyzzy", "description": "d", "match": {"direction": "client", "command": ["XYZZY"]},
    "actions": {"answer": {"status": "OK", "text": "Nothing happens", "untagged": ["* OK [ALERT] magic"]}}}])js");
  Playbook p(*rules);
  p.log_in_as("SomeOtherMailer");
  EXPECT_EQ(p.client("b1 NOOP\r\nb2 xyzzy\r\nb3 NOOP\r\n"), "b1 NOOP\r\nb3 NOOP\r\n");
  EXPECT_EQ(p.to_client(), "* OK [ALERT] magic\r\nb2 OK Nothing happens\r\n");
  // The answered command left the table of commands in progress.
  EXPECT_EQ(p.session.state().pending().size(), 2u);
  EXPECT_EQ(p.server("b1 OK NOOP completed\r\nb3 OK NOOP completed\r\n"), "b1 OK NOOP completed\r\nb3 OK NOOP completed\r\n");
}

TEST(SessionRules, AnswersACommandWithALiteralBeforeItsPayload) {
  auto rules = store_with(R"js([{
    "name": "answer-append", "description": "d", "match": {"direction": "client", "command": ["APPEND"]},
    "actions": {"answer": {"status": "NO", "text": "[CANNOT] not here"}}}])js");
  Playbook p(*rules);
  p.log_in_as("SomeOtherMailer");
  // LITERAL+: the payload follows at once and must not reach the server either.
  EXPECT_EQ(p.client("c1 APPEND INBOX {5+}\r\nhello\r\nc2 NOOP\r\n"), "c2 NOOP\r\n");
  EXPECT_EQ(p.to_client(), "c1 NO [CANNOT] not here\r\n");
}

TEST(SessionRules, HidesAndAddsCapabilitiesInDataAndCodes) {
  auto rules = store_with(R"js([{
    "name": "caps", "description": "d", "match": {"direction": "server"},
    "actions": {"capabilities": {"hide": ["CONDSTORE"], "add": ["XLIST"]}}}])js");
  Playbook p(*rules);
  EXPECT_EQ(p.server("* OK [CAPABILITY IMAP4rev1 CONDSTORE IDLE] ready\r\n"), "* OK [CAPABILITY IMAP4rev1 IDLE XLIST] ready\r\n");
  p.client("a CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 CONDSTORE IDLE\r\na OK done\r\n"),
            "* CAPABILITY IMAP4rev1 IDLE XLIST\r\na OK done\r\n");
  p.client("b LOGIN bob secret\r\n");
  EXPECT_EQ(p.server("b OK [CAPABILITY IMAP4rev1 CONDSTORE] Logged in\r\n"), "b OK [CAPABILITY IMAP4rev1 XLIST] Logged in\r\n");
  // Messages without capabilities don't count as hits.
  p.server("* 1 EXISTS\r\n");
  EXPECT_EQ(p.session.rule_hits()[0].second, 3u);
}

TEST(SessionRules, RewritesXlistToListAndTranslatesTheResponsesBack) {
  auto rules = store_with(R"js([{
    "name": "xlist", "description": "d", "match": {"direction": "client", "command": ["XLIST"]},
    "actions": {"rewrite_command": {"to": "LIST", "append": "RETURN (SPECIAL-USE)",
      "responses": {"from": "LIST", "to": "XLIST",
                    "replace": [{"pattern": "\\\\Junk\\b", "with": "\\\\Spam"}]}}}}])js");
  Playbook p(*rules);
  p.log_in_as("SomeOtherMailer");
  EXPECT_EQ(p.client("x1 XLIST \"\" \"*\"\r\n"), "x1 LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n");
  EXPECT_EQ(p.server("* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren \\Junk) \"/\" Junk\r\n"
                     "x1 OK List completed\r\n"),
            "* XLIST (\\HasNoChildren) \"/\" INBOX\r\n* XLIST (\\HasNoChildren \\Spam) \"/\" Junk\r\n"
            "x1 OK List completed\r\n");
  // A later plain LIST is the client's own: untouched.
  EXPECT_EQ(p.client("x2 LIST \"\" \"*\"\r\n"), "x2 LIST \"\" \"*\"\r\n");
  EXPECT_EQ(p.server("* LIST (\\Junk) \"/\" Junk\r\nx2 OK done\r\n"), "* LIST (\\Junk) \"/\" Junk\r\nx2 OK done\r\n");
}

TEST(SessionRules, ReplacesTextAroundALiteralWithoutChangingIt) {
  auto rules = store_with(R"js([{
    "name": "strip-sep", "description": "d", "match": {"direction": "client", "command": ["APPEND"]},
    "actions": {"replace": [{"pattern": "\"([^\"]+)/\"", "with": "\"\\1\""}]}}])js");
  Playbook p(*rules);
  p.log_in_as("SomeOtherMailer");
  // Whole in one read: the literal is inline.
  EXPECT_EQ(p.client("d1 APPEND \"Lists/\" {12+}\r\n\"Lists/\" ok\r\n"), "d1 APPEND \"Lists\" {12+}\r\n\"Lists/\" ok\r\n");
  // A big literal streams: the head is edited, the payload passes as it came.
  const std::string payload(10000, 'x');
  const std::string head = "d2 APPEND \"Lists/\" {10000+}\r\n";
  EXPECT_EQ(p.client(head + payload.substr(0, 4000)), "d2 APPEND \"Lists\" {10000+}\r\n" + payload.substr(0, 4000));
  EXPECT_EQ(p.client(payload.substr(4000) + "\r\n"), payload.substr(4000) + "\r\n");
}

TEST(SessionRules, AddsAFieldToTheServersIdAnswer) {
  // The recipe of rules/README.md: the client sees the server's ID with one field more.
  auto rules = store_with(R"js([{
    "name": "id-add-proxy", "description": "d", "match": {"direction": "server", "kind": ["data"], "name": ["ID"]},
    "actions": {"replace": [{"pattern": "^ID \\((.*)\\)$", "with": "ID (\\1 \"proxy\" \"imapscope\")"}]}}])js");
  Playbook p(*rules);
  p.server("* OK ready\r\n");
  p.client("a ID NIL\r\n");
  EXPECT_EQ(p.server("* ID (\"name\" \"Dovecot\")\r\na OK ID completed\r\n"),
            "* ID (\"name\" \"Dovecot\" \"proxy\" \"imapscope\")\r\na OK ID completed\r\n");
}

TEST(SessionRules, InjectsLinesAroundAResponse) {
  auto rules = store_with(R"js([{
    "name": "inject", "description": "d", "match": {"direction": "server", "kind": ["tagged"], "command": ["LOGIN"]},
    "actions": {"inject": {"before": ["* OK [ALERT] before"], "after": ["* OK after"]}}}])js");
  Playbook p(*rules);
  p.server("* OK ready\r\n");
  p.client("a LOGIN bob secret\r\n");
  EXPECT_EQ(p.server("a OK Logged in\r\n"), "* OK [ALERT] before\r\na OK Logged in\r\n* OK after\r\n");
}

TEST(SessionRules, DelaysAResponseAndHoldsWhatFollows) {
  auto rules = store_with(R"js([{
    "name": "slow-exists", "description": "d", "match": {"direction": "server", "name": ["EXISTS"]},
    "actions": {"delay_ms": 1500}}])js");
  Playbook p(*rules);
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.server("* 1 EXISTS\r\n* 1 RECENT\r\n"), "");
  EXPECT_EQ(p.left_server, "* 1 RECENT\r\n");  // not consumed: the relay keeps it
  const auto request = p.session.take_delay_request();
  ASSERT_TRUE(request);
  EXPECT_EQ(request->direction, policy::Direction::Server);
  EXPECT_EQ(request->duration.count(), 1500);
  EXPECT_FALSE(p.session.take_delay_request());
  // A local answer meanwhile waits behind the held response.
  p.client("a COMPRESS DEFLATE\r\n");
  EXPECT_EQ(p.to_client(), "");
  p.session.resume(policy::Direction::Server);
  EXPECT_EQ(p.to_client(), "* 1 EXISTS\r\na NO [CANNOT] COMPRESS is not offered here\r\n");
  EXPECT_EQ(p.server("* 1 RECENT\r\n"), "* 1 RECENT\r\n");
}

TEST(SessionRules, DelaysACommand) {
  auto rules = store_with(R"js([{
    "name": "slow-noop", "description": "d", "match": {"direction": "client", "command": ["NOOP"]},
    "actions": {"delay_ms": 100}}])js");
  Playbook p(*rules);
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("a NOOP\r\nb CAPABILITY\r\n"), "");
  EXPECT_TRUE(p.session.client_blocked());
  EXPECT_EQ(p.left_client, "b CAPABILITY\r\n");
  ASSERT_TRUE(p.session.take_delay_request());
  p.session.resume(policy::Direction::Client);
  EXPECT_EQ(Playbook::take(p.session.to_server()), "a NOOP\r\n");
  EXPECT_EQ(p.client("b CAPABILITY\r\n"), "b CAPABILITY\r\n");
}

TEST(SessionRules, PicksUpReloadedRulesAtTheNextMessage) {
  auto rules = store_with(R"js([{"name": "a", "description": "d", "match": {"direction": "server", "kind": ["data"]},
    "actions": {"replace": [{"pattern": "EXISTS", "with": "EXISTS"}]}}])js");
  Playbook p(*rules);
  EXPECT_EQ(p.server("* OK ready\r\n* 1 EXISTS\r\n"), "* OK ready\r\n* 1 EXISTS\r\n");
  std::ofstream(rules->path()) << R"js({"rules": [{"name": "b", "description": "d",
    "match": {"direction": "server", "kind": ["data"], "name": ["EXISTS"]}, "actions": {"drop": true}}]})js";
  ASSERT_TRUE(rules->reload().ok);
  EXPECT_EQ(p.server("* 2 EXISTS\r\n* 2 RECENT\r\n"), "* 2 RECENT\r\n");
  // A broken file changes nothing.
  std::ofstream(rules->path()) << "{";
  EXPECT_FALSE(rules->reload().ok);
  EXPECT_EQ(p.server("* 3 EXISTS\r\n* 3 RECENT\r\n"), "* 3 RECENT\r\n");
}

TEST(RuleCertainty, AGuessBelowTheRuleDoesNotTriggerItAndAnOverturnedGuessIsRecorded) {
  // Apple Mail's tag shape (1.854, counting in front) guessed from one CAPABILITY
  // (0.54); one rule accepts such a guess, the other keeps the default (0.7).
  auto store = store_with(R"js([
    {"name": "apple-weak", "description": "d", "match": {"direction": "server", "client": ["apple_mail"],
     "identified_by": "heuristic", "min_confidence": 0.5, "kind": ["data"], "name": ["CAPABILITY"]},
     "actions": {"capabilities": {"add": ["X-WEAK"]}}},
    {"name": "apple-default", "description": "d", "match": {"direction": "server", "client": ["apple_mail"],
     "kind": ["data"], "name": ["CAPABILITY"]}, "actions": {"capabilities": {"add": ["X-DEFAULT"]}}}])js");
  Playbook p(*store);
  p.server("* OK ready\r\n");
  p.client("1.854 CAPABILITY\r\n");
  EXPECT_EQ(p.session.client().family, "apple_mail");
  EXPECT_EQ(p.session.client().method, identify::IdMethod::Heuristic);
  const auto caps = p.server("* CAPABILITY IMAP4rev1 ID\r\n1.854 OK done\r\n");
  EXPECT_NE(caps.find("X-WEAK"), std::string::npos) << caps;
  EXPECT_EQ(caps.find("X-DEFAULT"), std::string::npos) << caps;
  EXPECT_TRUE(p.session.overturned_guesses().empty());
  // Its ID says it is Dovecot's imaptest: the ID wins, and the rule that acted on
  // the guess is recorded for the log.
  p.client("2.854 ID (\"name\" \"imaptest\")\r\n");
  EXPECT_EQ(p.session.client().family, "imaptest");
  EXPECT_EQ(p.session.client().method, identify::IdMethod::Id);
  EXPECT_EQ(p.session.client().id_name, "imaptest");
  ASSERT_EQ(p.session.overturned_guesses().size(), 1u);
  const auto& o = p.session.overturned_guesses()[0];
  EXPECT_EQ(o.guessed, "apple_mail");
  EXPECT_EQ(o.identified, "imaptest");
  EXPECT_EQ(o.rules, std::vector<std::string>{"apple-weak"});
  // From now on the rules for Apple Mail leave it alone.
  (void)p.server("* ID NIL\r\n2.854 OK done\r\n");
  p.client("3.854 CAPABILITY\r\n");
  const auto caps2 = p.server("* CAPABILITY IMAP4rev1 ID\r\n3.854 OK done\r\n");
  EXPECT_EQ(caps2.find("X-WEAK"), std::string::npos) << caps2;
}

}  // namespace
}  // namespace imapscope::session
