// The replay plan from transcript events: the bytes each step sends (literals,
// login, IDLE), the responses it expects, what is skipped; and the normalisation
// and comparison of responses.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "proxy/inspect/encoding.hpp"
#include "proxy/inspect/replay_plan.hpp"

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

constexpr const char* kPassword = "pa\"ss\\word";

// Events as a transcript holds them, one every millisecond.
struct Recording {
  std::vector<json> events;
  std::int64_t t = 1'000'000;

  Recording& add(json e) {
    e["t"] = t += 1000;
    e["s"] = 1;
    events.push_back(std::move(e));
    return *this;
  }
  Recording& c(const std::string& tag, const std::string& command, const std::string& text, json literals = nullptr) {
    json e{{"dir", "C"}, {"kind", "command"}, {"tag", tag}, {"command", command}, {"text", text}};
    if (!literals.is_null()) e["literals"] = std::move(literals);
    return add(std::move(e));
  }
  Recording& s(const std::string& kind, const std::string& text, const std::string& tag = "",
               const std::string& status = "") {
    json e{{"dir", "S"}, {"kind", kind}, {"text", text}};
    if (!tag.empty()) e["tag"] = tag;
    if (!status.empty()) e["status"] = status;
    return add(std::move(e));
  }
  ReplayPlan plan(std::int64_t max_wait_ms = 2000) const {
    return build_replay_plan(1, events, {"alice", kPassword, max_wait_ms});
  }
};

// Everything a step writes, padding included.
std::string wire(const ReplayStep& step) {
  std::string out;
  for (const auto& send : step.sends) {
    for (const auto& piece : send.pieces) {
      out += piece.bytes;
      padding_bytes(piece.padding, piece.padding_lines, 0, static_cast<std::size_t>(piece.padding), out);
    }
  }
  return out;
}

std::vector<std::string> texts(const std::vector<ResponseLine>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(l.text);
  return out;
}

TEST(ReplayPlan, AuthenticateBecomesALoginAndExpectsTheRecordedAnswers) {
  Recording r;
  r.s("untagged_status", "* OK [CAPABILITY IMAP4rev1] Dovecot ready.");
  r.c("a1", "AUTHENTICATE", "a1 AUTHENTICATE PLAIN");
  r.s("continuation", "+ ");
  r.add({{"dir", "C"}, {"kind", "sasl"}, {"text", "*** (SASL response)"}});
  r.s("tagged", "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in", "a1", "OK");
  r.c("a2", "SELECT", "a2 SELECT INBOX");
  r.s("data", "* 2 EXISTS").s("untagged_status", "* OK [UIDVALIDITY 1700000000] UIDs valid");
  r.s("tagged", "a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).", "a2", "OK");
  const auto plan = r.plan();
  ASSERT_TRUE(plan.greeting);
  EXPECT_EQ(plan.greeting->text, "* OK [CAPABILITY IMAP4rev1] Dovecot ready.");
  ASSERT_EQ(plan.steps.size(), 2u);
  const auto& login = plan.steps[0];
  EXPECT_TRUE(login.login);
  EXPECT_EQ(wire(login), "a1 LOGIN \"alice\" \"pa\\\"ss\\\\word\"\r\n");
  EXPECT_EQ(login.display, "a1 LOGIN \"alice\" ***");
  EXPECT_EQ(texts(login.expected), std::vector<std::string>{"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in"});
  EXPECT_EQ(wire(plan.steps[1]), "a2 SELECT INBOX\r\n");
  EXPECT_EQ(texts(plan.steps[1].expected),
            (std::vector<std::string>{"* 2 EXISTS", "* OK [UIDVALIDITY 1700000000] UIDs valid",
                                      "a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs)."}));
  EXPECT_FALSE(plan.pipelined);
}

TEST(ReplayPlan, APasswordThatCantBeQuotedGoesAsALiteral) {
  Recording r;
  r.c("a1", "LOGIN", "a1 LOGIN sha256:2bd806c97f0e ***").s("tagged", "a1 OK Logged in", "a1", "OK");
  const auto plan = build_replay_plan(1, r.events, {"alice", "p\xC3\xA4ss", 2000});
  const auto& sends = plan.steps[0].sends;
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_TRUE(sends[0].await_continuation);
  EXPECT_EQ(sends[0].pieces[0].bytes, "a1 LOGIN \"alice\" {5}\r\n");
  EXPECT_EQ(sends[1].pieces[0].bytes, "p\xC3\xA4ss\r\n");
  for (const auto& step : plan.steps) EXPECT_EQ(step.display.find("p\xC3\xA4ss"), std::string::npos);
}

TEST(ReplayPlan, AFailedLoginIsNotReplayed) {
  Recording r;
  r.c("a1", "LOGIN", "a1 LOGIN sha256:2bd806c97f0e ***").s("tagged", "a1 NO [AUTHENTICATIONFAILED] Failed", "a1", "NO");
  r.c("a2", "LOGIN", "a2 LOGIN sha256:2bd806c97f0e ***").s("tagged", "a2 OK Logged in", "a2", "OK");
  const auto plan = r.plan();
  EXPECT_NE(plan.steps[0].skipped, "");
  EXPECT_TRUE(plan.steps[0].sends.empty());
  EXPECT_EQ(plan.steps[1].skipped, "");
  EXPECT_EQ(wire(plan.steps[1]).substr(0, 9), "a2 LOGIN ");
}

TEST(ReplayPlan, CapturedLiteralsAreSentAsRecordedWithTheirSynchronisation) {
  const std::string body = "Subject: hi\r\n\r\nhello\r\n";
  const std::string sha = "b0e1cd5e2bd29bde7a3a4d5c53ccfd08f2d9f48ad8e02c0a60f4a3c9e7b3b8c9";  // not this body's
  Recording r;
  // Two literals: a synchronising one, then a LITERAL+ one; a quoted "{5}" is no header.
  r.c("a3", "APPEND", "a3 APPEND \"{5}\" (\\Seen) {22} {3+}",
      json::array({{{"size", 22}, {"data", base64_encode(body)}}, {{"size", 3}, {"data", base64_encode("abc")}}}));
  r.s("continuation", "+ OK").s("tagged", "a3 OK [APPENDUID 1700000000 7] Append completed.", "a3", "OK");
  const auto plan = r.plan();
  const auto& step = plan.steps[0];
  ASSERT_EQ(step.sends.size(), 2u);
  EXPECT_TRUE(step.sends[0].await_continuation);
  EXPECT_EQ(step.sends[0].pieces[0].bytes, "a3 APPEND \"{5}\" (\\Seen) {22}\r\n");
  EXPECT_EQ(wire(step), "a3 APPEND \"{5}\" (\\Seen) {22}\r\n" + body + " {3+}\r\nabc\r\n");
  EXPECT_TRUE(step.approximations.empty());
  // A payload that doesn't match its hash is made up instead.
  Recording bad;
  bad.c("a4", "APPEND", "a4 APPEND INBOX {22}",
        json::array({{{"size", 22}, {"sha256", sha}, {"data", base64_encode(body)}}}));
  EXPECT_EQ(bad.plan().steps[0].approximations.size(), 1u);
}

TEST(ReplayPlan, MissingPayloadsAreMadeUpAtTheRecordedSize) {
  Recording r;
  r.c("a5", "APPEND", "a5 APPEND INBOX {1000}", json::array({{{"size", 1000}, {"sha256", "ab"}}}));
  r.c("a6", "APPEND", "a6 APPEND {5}", json::array({{{"size", 5}}}));  // the mailbox name, then cut short
  r.c("a7", "SEARCH", "a7 SEARCH CHARSET UTF-8 SUBJECT {4}",
      json::array({{{"size", 4}, {"data", "YWI="}, {"truncated", true}}}));
  const auto plan = r.plan();
  const std::string message = wire(plan.steps[0]).substr(std::string("a5 APPEND INBOX {1000}\r\n").size());
  ASSERT_EQ(message.size(), 1000u + 2);  // and the final CRLF
  EXPECT_EQ(message.substr(0, 6), "Date: ");
  EXPECT_NE(message.find("\r\nFrom: "), std::string::npos);
  EXPECT_NE(message.find("\r\n\r\nxxxx"), std::string::npos);
  EXPECT_EQ(message.substr(message.size() - 4), "\r\n\r\n");  // the body's last line, then the command's end
  EXPECT_EQ(plan.steps[0].approximations.size(), 1u);
  EXPECT_EQ(wire(plan.steps[1]), "a6 APPEND {5}\r\nxxxxx\r\n");
  EXPECT_EQ(wire(plan.steps[2]), "a7 SEARCH CHARSET UTF-8 SUBJECT {4}\r\nxxxx\r\n");
  EXPECT_NE(plan.steps[2].approximations[0].find("first 2 of 4 bytes"), std::string::npos);
}

TEST(ReplayPlan, PaddingHasTheExactSizeWhereverItIsCut) {
  for (std::uint64_t total : {0u, 1u, 2u, 77u, 78u, 79u, 1000u}) {
    std::string whole, pieces;
    padding_bytes(total, true, 0, static_cast<std::size_t>(total), whole);
    for (std::uint64_t off = 0; off < total; off += 7) {
      padding_bytes(total, true, off, static_cast<std::size_t>(std::min<std::uint64_t>(7, total - off)), pieces);
    }
    EXPECT_EQ(whole.size(), total);
    EXPECT_EQ(pieces, whole);
    EXPECT_EQ(whole.find("\r\r"), std::string::npos);
    if (total >= 2) {
      EXPECT_EQ(whole.substr(whole.size() - 2), "\r\n");
    }
  }
}

TEST(ReplayPlan, IdleWaitsForTheRecordedTimeCapped) {
  Recording r;
  r.c("a8", "IDLE", "a8 IDLE").s("continuation", "+ idling");
  r.t += 500'000;  // half a second idle
  r.add({{"dir", "C"}, {"kind", "done"}, {"text", "DONE"}});
  r.s("tagged", "a8 OK Idle completed (0.001 + 0.000 + 0.500 secs).", "a8", "OK");
  auto plan = r.plan();
  const auto& sends = plan.steps[0].sends;
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_TRUE(sends[0].await_continuation);
  EXPECT_EQ(sends[1].pieces[0].bytes, "DONE\r\n");
  EXPECT_EQ(sends[1].delay_ms, 502);
  EXPECT_TRUE(plan.steps[0].approximations.empty());
  EXPECT_EQ(texts(plan.steps[0].expected),
            std::vector<std::string>{"a8 OK Idle completed (0.001 + 0.000 + 0.500 secs)."});
  plan = r.plan(100);
  EXPECT_EQ(plan.steps[0].sends[1].delay_ms, 100);
  EXPECT_EQ(plan.steps[0].approximations.size(), 1u);
}

TEST(ReplayPlan, CommandsTheServerNeverSawAreSkipped) {
  Recording r;
  r.c("a1", "STARTTLS", "a1 STARTTLS");
  r.add({{"dir", "P"}, {"text", "a1 OK Begin TLS negotiation now"}});
  r.c("a2", "ID", "a2 ID NIL");
  r.add({{"dir", "P"}, {"text", "a2 OK ID answered by a rule"}});
  r.add({{"dir", "P"}, {"text", "* OK injected"}});
  r.c("a3", "NOOP", "a3 NOOP")
      .add({{"dir", "C"},
            {"kind", "command"},
            {"tag", "a4"},
            {"command", "FETCH"},
            {"text", "a4 FETCH 1:*"},
            {"rejected", true}});
  r.s("tagged", "a3 OK NOOP completed.", "a3", "OK");
  const auto plan = r.plan();
  ASSERT_EQ(plan.steps.size(), 4u);
  EXPECT_NE(plan.steps[0].skipped, "");
  EXPECT_NE(plan.steps[1].skipped.find("the proxy answered it itself"), std::string::npos);
  EXPECT_EQ(plan.steps[2].skipped, "");
  EXPECT_NE(plan.steps[3].skipped, "");
  EXPECT_EQ(plan.ignored_proxy_lines, 1u);
}

TEST(ReplayPlan, PipelinedAnswersGoToTheOldestCommandAndUnsolicitedOnesToTheNext) {
  Recording r;
  r.c("a1", "NOOP", "a1 NOOP").c("a2", "FETCH", "a2 FETCH 1 FLAGS");
  r.s("untagged_status", "* OK still here").s("tagged", "a1 OK done", "a1", "OK");
  r.s("data", "* 1 FETCH (FLAGS ())").s("tagged", "a2 OK done", "a2", "OK");
  r.s("data", "* 3 EXISTS");  // between commands
  r.c("a3", "NOOP", "a3 NOOP").s("tagged", "a3 OK done", "a3", "OK");
  const auto plan = r.plan();
  EXPECT_TRUE(plan.pipelined);
  EXPECT_EQ(texts(plan.steps[0].expected), (std::vector<std::string>{"* OK still here", "a1 OK done"}));
  EXPECT_EQ(texts(plan.steps[1].expected), (std::vector<std::string>{"* 1 FETCH (FLAGS ())", "a2 OK done"}));
  EXPECT_EQ(texts(plan.steps[2].expected), (std::vector<std::string>{"* 3 EXISTS", "a3 OK done"}));
}

TEST(ReplayCompare, NormalisesTimingAndUidvalidity) {
  EXPECT_EQ(normalise({"a2 OK [READ-WRITE] Select completed (0.001 + 0.000 + 0.000 secs).", {}}).text,
            "a2 OK [READ-WRITE] Select completed.");
  EXPECT_EQ(normalise({"a2 OK Logout completed (0.001 + 0.000 secs).", {}}).text, "a2 OK Logout completed.");
  EXPECT_EQ(normalise({"a2 OK Took (a while secs).", {}}).text, "a2 OK Took (a while secs).");
  EXPECT_EQ(normalise({"* OK [UIDVALIDITY 1700000000] UIDs valid", {}}).text,
            "* OK [UIDVALIDITY <uidvalidity>] UIDs valid");
  EXPECT_EQ(normalise({"a3 OK [APPENDUID 17 7] Append completed.", {}}).text,
            "a3 OK [APPENDUID <uidvalidity> 7] Append completed.");
  EXPECT_EQ(normalise({"* STATUS INBOX (MESSAGES 2 UIDVALIDITY 17)", {}}).text,
            "* STATUS INBOX (MESSAGES 2 UIDVALIDITY <uidvalidity>)");
  EXPECT_EQ(normalise({"* 1 FETCH (ENVELOPE (NIL \"UIDVALIDITY 5\"))", {}}).text,
            "* 1 FETCH (ENVELOPE (NIL \"UIDVALIDITY 5\"))");
  EXPECT_EQ(normalise({"* 1 FETCH (BODY[] \"caf\xC3\"", {}}).text, "* 1 FETCH (BODY[] \"caf\xEF\xBF\xBD\"");
}

TEST(ReplayCompare, LiteralsCompareBySizeAndHashWhenKnown) {
  const ResponseLine a{"* 1 FETCH (BODY[] {5})", {{5, "aa"}}};
  EXPECT_TRUE(same_line(a, {"* 1 FETCH (BODY[] {5})", {{5, "aa"}}}));
  EXPECT_FALSE(same_line(a, {"* 1 FETCH (BODY[] {5})", {{5, "bb"}}}));
  EXPECT_TRUE(same_line(a, {"* 1 FETCH (BODY[] {5})", {{5, ""}}}));
  EXPECT_EQ(render_line({"x {5}", {{5, "0123456789abcdef"}}}), "x {5}  [literal 5 B sha256:0123456789ab]");
}

TEST(ReplayCompare, ListsTheDifferencesLikeDiff) {
  auto lines = [](std::vector<std::string> t) {
    std::vector<ResponseLine> out;
    for (auto& s : t) out.push_back({s, {}});
    return out;
  };
  const auto same = compare_responses(lines({"* 1 EXISTS", "a OK"}), lines({"* 1 EXISTS", "a OK"}));
  EXPECT_TRUE(same.same);
  const auto c = compare_responses(lines({"* 1 EXISTS", "* 0 RECENT", "* OK x", "a OK"}),
                                   lines({"* 2 EXISTS", "* 0 RECENT", "* OK x", "* OK y", "a OK"}));
  EXPECT_FALSE(c.same);
  EXPECT_EQ(diff_listing(c, 1), (std::vector<std::string>{"- * 1 EXISTS", "+ * 2 EXISTS", "  * 0 RECENT", "  * OK x",
                                                          "+ * OK y", "  a OK"}));
  EXPECT_EQ(diff_listing(c, 0), (std::vector<std::string>{"- * 1 EXISTS", "+ * 2 EXISTS", "  ...", "+ * OK y"}));
  const auto missing = compare_responses(lines({"* 1 EXISTS", "a OK"}), lines({"* 1 EXISTS"}));
  EXPECT_EQ(diff_listing(missing), (std::vector<std::string>{"  * 1 EXISTS", "- a OK"}));
}

}  // namespace
}  // namespace imapscope::inspect
