// Matching and the framing-safe edits: literals keep their lengths, tags stay.
#include <gtest/gtest.h>

#include "proxy/policy/matcher.hpp"
#include "proxy/policy/rewrite.hpp"
#include "tests/unit/policy/rules_fixture.hpp"

namespace imapscope::policy {
namespace {

std::vector<Replacement> replacing(const std::string& pattern, const std::string& with) {
  std::vector<Replacement> out;
  out.push_back(Replacement{std::make_unique<re2::RE2>(pattern), with});
  return out;
}

std::string replaced(std::string message, bool literals, bool starts, const std::string& pattern,
                     const std::string& with) {
  std::string out;
  return replace_text(message, literals, starts, replacing(pattern, with), out) ? out : message;
}

TEST(TrailingLiteral, FindsEveryLiteralForm) {
  EXPECT_EQ(trailing_literal("a APPEND INBOX {12}")->size, 12u);
  EXPECT_EQ(trailing_literal("a APPEND INBOX {12}")->start, 15u);
  EXPECT_EQ(trailing_literal("a APPEND INBOX {12+}")->size, 12u);
  EXPECT_EQ(trailing_literal("a APPEND INBOX {12-}")->size, 12u);
  EXPECT_EQ(trailing_literal("a APPEND INBOX ~{7}")->start, 15u);
  EXPECT_FALSE(trailing_literal("* OK {12"));
  EXPECT_FALSE(trailing_literal("* OK {}"));
  EXPECT_FALSE(trailing_literal("* OK {x}"));
}

TEST(ReplaceText, EditsLineTextOnlyAndNeverTheTag) {
  // The tag and the "*" are not part of what a replacement sees.
  EXPECT_EQ(replaced("a1 SELECT \"INBOX/\"\r\n", true, true, "a1", "zz"), "a1 SELECT \"INBOX/\"\r\n");
  EXPECT_EQ(replaced("a1 SELECT \"Lists/\"\r\n", true, true, "\"(.+)/\"", "\"\\1\""), "a1 SELECT \"Lists\"\r\n");
  EXPECT_EQ(replaced("* OK Still here\r\n", false, true, "Still here", "idling"), "* OK idling\r\n");
  // A continuation part of a message: no tag to skip.
  EXPECT_EQ(replaced(" \"x/\"\r\n", true, false, "x/", "x"), " \"x\"\r\n");
}

TEST(ReplaceText, LiteralsKeepTheirBytesAndLengths) {
  // The literal's payload contains the pattern; only the line text around it changes.
  const std::string message = "A2 APPEND Lists/ (\\Seen) {11}\r\nLists/ body\r\n";
  EXPECT_EQ(replaced(message, true, true, "Lists/", "Lists"), "A2 APPEND Lists (\\Seen) {11}\r\nLists/ body\r\n");
  // Text after a literal, on the next line part, is edited too.
  const std::string two = "A3 LOGIN {3}\r\nbob pass/\r\n";
  EXPECT_EQ(replaced(two, true, true, "pass/", "pass"), "A3 LOGIN {3}\r\nbob pass\r\n");
  // A head whose literal streams on (the payload is not in these bytes).
  EXPECT_EQ(replaced("* 1 FETCH (X/ BODY[] {5000}\r\n", true, true, "X/", "X"), "* 1 FETCH (X BODY[] {5000}\r\n");
}

TEST(ReplaceText, RefusesToMakeALineEndLikeALiteral) {
  const std::string message = "* OK done 12\r\n";
  EXPECT_EQ(replaced(message, true, true, "12", "{12}"), message);
  // On a status line "{12}" is text (literals are not possible there).
  EXPECT_EQ(replaced(message, false, true, "12", "{12}"), "* OK done {12}\r\n");
}

TEST(ReplaceText, NothingMatchesNothingChanges) {
  const std::string message = "a NOOP\r\n";
  std::string out = "untouched";
  EXPECT_FALSE(replace_text(message, true, true, replacing("XYZ", ""), out));
  EXPECT_EQ(out, "untouched");
}

TEST(EditCapabilities, HidesAndAddsOnce) {
  auto store = testing::store_with(R"([
    {"name": "hide", "description": "d", "match": {"direction": "server"},
     "actions": {"capabilities": {"hide": ["CONDSTORE", "AUTH=*"], "add": ["XLIST"]}}},
    {"name": "add", "description": "d", "match": {"direction": "server"},
     "actions": {"capabilities": {"add": ["xlist", "AUTH=PLAIN", "X-FOO"]}}}])");
  const auto set = store->current();
  const Rule* rules[] = {&set->rules[0], &set->rules[1]};
  EXPECT_EQ(edit_capabilities("IMAP4rev1 CONDSTORE AUTH=PLAIN AUTH=LOGIN IDLE", rules), "IMAP4rev1 IDLE XLIST X-FOO");
  EXPECT_EQ(edit_capabilities("IMAP4rev1 XLIST", std::span<const Rule* const>(rules, 1)), "IMAP4rev1 XLIST");
}

MessageFacts server_facts(MessageKind kind, std::string_view line) {
  MessageFacts f;
  f.direction = Direction::Server;
  f.kind = kind;
  f.line = line;
  f.phase = Phase::Selected;
  return f;
}

TEST(Matcher, EachFieldNarrowsTheMatch) {
  auto store = testing::store_with(R"([
    {"name": "r", "description": "d",
     "match": {"direction": "server", "state": ["idle"], "kind": ["untagged_status"], "status": ["OK"],
               "text": "^\\* OK Still"},
     "actions": {"drop": true}}])");
  const Match& m = store->current()->rules[0].match;
  auto f = server_facts(MessageKind::UntaggedStatus, "* OK Still here");
  f.status = imap::Status::Ok;
  f.phase = Phase::Idle;
  EXPECT_TRUE(matches(m, f));
  auto other = f;
  other.phase = Phase::Selected;
  EXPECT_FALSE(matches(m, other));
  other = f;
  other.kind = MessageKind::Tagged;
  EXPECT_FALSE(matches(m, other));
  other = f;
  other.status = imap::Status::No;
  EXPECT_FALSE(matches(m, other));
  other = f;
  other.line = "* OK Still";
  EXPECT_TRUE(matches(m, other));
  other.line = "* OK still here";  // case-sensitive unless ignore_case
  EXPECT_FALSE(matches(m, other));
}

TEST(Matcher, CommandsOfResponsesComeFromTheCommandsInProgress) {
  auto store = testing::store_with(R"([
    {"name": "r", "description": "d", "match": {"direction": "server", "command": ["LIST"], "name": ["list"]},
     "actions": {"delay_ms": 1}}])");
  const Match& m = store->current()->rules[0].match;
  auto f = server_facts(MessageKind::Data, "* LIST () \"/\" INBOX");
  f.name = "LIST";
  EXPECT_FALSE(matches(m, f));  // no LIST in progress
  const std::vector<imap::PendingCommand> pending{{"a1", imap::Verb::Noop, false}, {"a2", imap::Verb::List, false}};
  f.pending = pending;
  EXPECT_TRUE(matches(m, f));
  f.name = "LSUB";
  EXPECT_FALSE(matches(m, f));
}

TEST(Matcher, ClientConditions) {
  auto store = testing::store_with(R"([
    {"name": "r", "description": "d",
     "match": {"direction": "server", "client": ["thunderbird"], "version": {"min": "91", "max": "115.99"},
               "method": ["id"]},
     "actions": {"delay_ms": 1}}])");
  const Match& m = store->current()->rules[0].match;
  identify::ClientInfo tb{"thunderbird", "102.5.0", identify::IdMethod::Id, 1};
  EXPECT_TRUE(applies_to(m, tb));
  auto other = tb;
  other.version = "128.0";
  EXPECT_FALSE(applies_to(m, other));
  other.version = "";  // no version: a version range never matches
  EXPECT_FALSE(applies_to(m, other));
  other = tb;
  other.method = identify::IdMethod::Heuristic;
  EXPECT_FALSE(applies_to(m, other));
  other = tb;
  other.family = "outlook";
  EXPECT_FALSE(applies_to(m, other));
}

TEST(SessionRules, SelectsRulesPerClientAndCountsHits) {
  auto store = testing::store_with(R"([
    {"name": "tb-only", "description": "d", "match": {"direction": "server", "client": ["thunderbird"]},
     "actions": {"delay_ms": 1}},
    {"name": "everyone", "description": "d", "match": {"direction": "client", "command": ["NOOP"]},
     "actions": {"answer": {"status": "OK", "text": "NOOP done here"}}},
    {"name": "second-answer", "description": "d", "match": {"direction": "client"},
     "actions": {"answer": {"status": "NO", "text": "never"}}}])");
  SessionRules rules(*store);
  identify::ClientInfo unknown;
  rules.refresh(unknown, 0);
  EXPECT_FALSE(rules.active(Direction::Server));
  EXPECT_TRUE(rules.active(Direction::Client));
  MessageFacts noop;
  noop.direction = Direction::Client;
  noop.kind = MessageKind::Command;
  noop.command = "noop";
  const auto& v = rules.evaluate(noop);
  ASSERT_EQ(v.rules.size(), 1u);  // the first answer decides; the second doesn't hit
  EXPECT_EQ(v.answer->text, "NOOP done here");

  identify::ClientInfo tb{"thunderbird", "", identify::IdMethod::Heuristic, 0.8};  // sure enough by default
  rules.refresh(tb, 1);
  EXPECT_TRUE(rules.active(Direction::Server));
  (void)rules.evaluate(server_facts(MessageKind::Data, "* 1 EXISTS"));
  EXPECT_EQ(rules.hits(), (std::vector<std::pair<std::string, std::uint32_t>>{{"everyone", 1}, {"tb-only", 1}}));
  EXPECT_EQ(store->current()->rules[0].hits->load(), 1u);
}

}  // namespace
}  // namespace imapscope::policy
