// Rule files: what loads, and what is refused with file, JSON pointer and reason.
#include <gtest/gtest.h>

#include "tests/unit/policy/rules_fixture.hpp"

namespace imapscope::policy {
namespace {

using testing::load_error;
using testing::store_with;
using testing::test_families;
using testing::write_file;

constexpr const char* kKeepalive = R"({"rules": [{
  "name": "drop-keepalive", "description": "wakes the phone", "source": "seed 000",
  "match": {"direction": "server", "client": ["thunderbird_android"], "state": ["idle"],
            "kind": ["untagged_status"], "status": ["OK"], "text": "^\\* OK Still here$"},
  "actions": {"drop": true}}]})";

TEST(RuleLoader, ReadsEveryField) {
  const auto set = load_rules(write_file(R"({"rules": [{
    "name": "all-fields", "description": "d",
    "match": {"direction": "server", "client": ["outlook"], "version": {"min": "16", "max": "16.0.9"},
              "method": ["id", "heuristic"], "state": ["selected", "idle"], "kind": ["data", "tagged"],
              "command": ["fetch"], "name": ["Fetch"], "status": ["ok"], "code": ["alert"],
              "text": "x+", "ignore_case": true},
    "actions": {"replace": [{"pattern": "(a)(b)c", "with": "\\2\\1"}], "inject": {"before": ["* OK hi"]},
                "delay_ms": 250}}]})"),
                              test_families());
  ASSERT_EQ(set.rules.size(), 1u);
  const Rule& r = set.rules[0];
  EXPECT_EQ(r.match.direction, Direction::Server);
  EXPECT_EQ(r.match.families, std::vector<std::string>{"outlook"});
  ASSERT_TRUE(r.match.version_min && r.match.version_max);
  EXPECT_EQ(r.match.version_max->parts, (std::vector<std::uint32_t>{16, 0, 9}));
  EXPECT_EQ(r.match.methods, bit(identify::IdMethod::Id) | bit(identify::IdMethod::Heuristic));
  EXPECT_EQ(r.match.phases, bit(Phase::Selected) | bit(Phase::Idle));
  EXPECT_EQ(r.match.kinds, bit(MessageKind::Data) | bit(MessageKind::Tagged));
  EXPECT_EQ(r.match.commands, std::vector<std::string>{"FETCH"});
  EXPECT_EQ(r.match.names, std::vector<std::string>{"FETCH"});
  EXPECT_EQ(r.match.codes, std::vector<std::string>{"ALERT"});
  ASSERT_TRUE(r.match.text);
  EXPECT_FALSE(r.match.text->options().case_sensitive());
  EXPECT_EQ(r.actions.delay.count(), 250);
  EXPECT_EQ(r.actions.inject_before, std::vector<std::string>{"* OK hi"});
}

TEST(RuleLoader, DirectoryLoadsFilesInNameOrderAndSkipsDisabledRules) {
  const auto first = write_file(kKeepalive, "20-keepalive.json");
  const auto dir = std::filesystem::path(first).parent_path();
  std::ofstream(dir / "10-answer.json") << R"({"rules": [
    {"name": "answer-x", "description": "d", "match": {"direction": "client", "command": ["XYZZY"]},
     "actions": {"answer": {"status": "OK", "text": "nothing happens"}}},
    {"name": "off", "enabled": false, "description": "d", "match": {"direction": "client"},
     "actions": {"delay_ms": 5}}]})";
  std::ofstream(dir / "notes.txt") << "not a rule file";
  const auto set = load_rules(dir.string(), test_families());
  ASSERT_EQ(set.rules.size(), 2u);
  EXPECT_EQ(set.rules[0].name, "answer-x");
  EXPECT_EQ(set.rules[1].name, "drop-keepalive");
  EXPECT_EQ(set.files.size(), 2u);
}

TEST(RuleLoader, RefusesBadFilesWithFilePointerAndReason) {
  struct Case {
    const char* text;
    const char* expected;  // part of the message after "FILE: "
  };
  const Case cases[] = {
      {R"({"rules": [)", "line 1, column 12"},
      {R"({"rulez": []})", ": /rules: must be a list"},
      {R"({"rules": [{"name": "Bad Name", "description": "d", "match": {"direction": "client"},
          "actions": {"delay_ms": 5}}]})",
       "/rules/0/name: may only use a-z"},
      {R"({"rules": [{"name": "n", "match": {"direction": "client"}, "actions": {"delay_ms": 5}}]})",
       "/rules/0/description: is required"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {}, "actions": {"delay_ms": 5}}]})",
       "/rules/0/match/direction: is required"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server", "client": ["thunderbrid"]},
          "actions": {"drop": true}}]})",
       "/rules/0/match/client/0: \"thunderbrid\" is not a client family"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server", "kind": ["tagged"]},
          "actions": {"drop": true}}]})",
       "/rules/0/actions/drop: needs match.kind limited to"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server", "text": "(unclosed"},
          "actions": {"delay_ms": 1}}]})",
       "/rules/0/match/text: is not a valid regular expression"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server"},
          "actions": {"replace": [{"pattern": "a", "with": "\\3"}]}}]})",
       "/rules/0/actions/replace/0/with:"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server"},
          "actions": {"replace": [{"pattern": "a", "with": "x\r\ny"}]}}]})",
       "/rules/0/actions/replace/0/with: must not contain CR, LF or NUL"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "client"},
          "actions": {"answer": {"status": "OK", "text": "t"}, "delay_ms": 3}}]})",
       "/rules/0/actions/answer: a command answered here is not forwarded"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "client"},
          "actions": {"drop": true}}]})",
       "/rules/0/actions/drop: applies to server responses"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server"},
          "actions": {"inject": {"after": ["a OK tagged"]}}}]})",
       "/rules/0/actions/inject/after/0: must be an untagged response"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server"}, "actions": {}}]})",
       "/rules/0/actions: does nothing"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server"},
          "actions": {"delay_ms": 600000}}]})",
       "/rules/0/actions/delay_ms: must be a whole number from 1 to 60000"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server", "colour": "red"},
          "actions": {"delay_ms": 1}}]})",
       "/rules/0/match/colour: unknown setting"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "client", "name": ["LIST"]},
          "actions": {"delay_ms": 1}}]})",
       "/rules/0/match/name: applies to server responses only"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "server", "kind": ["data"]},
          "actions": {"thin_keepalives_s": 600}}]})",
       "/rules/0/actions/thin_keepalives_s: needs match.kind [\"untagged_status\"]"},
      {R"({"rules": [{"name": "n", "description": "d", "match": {"direction": "client"},
          "actions": {"thin_keepalives_s": 600}}]})",
       "/rules/0/actions/thin_keepalives_s: applies to server responses"},
  };
  for (const auto& c : cases) {
    const auto error = load_error(c.text);
    EXPECT_NE(error.find("rules.json"), std::string::npos) << error;
    EXPECT_NE(error.find(c.expected), std::string::npos) << "got: " << error << "\nwanted: " << c.expected;
  }
}

TEST(RuleLoader, DuplicateNamesAcrossFilesAreRefused) {
  const auto first = write_file(kKeepalive, "a.json");
  const auto dir = std::filesystem::path(first).parent_path();
  std::ofstream(dir / "b.json") << kKeepalive;
  try {
    (void)load_rules(dir.string(), test_families());
    FAIL() << "loaded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("b.json: rule \"drop-keepalive\": the name is used already in"),
              std::string::npos)
        << e.what();
  }
}

TEST(RuleStore, FailedReloadKeepsTheRulesInForceAndCounts) {
  const auto path = write_file(kKeepalive);
  RuleStore store(path, test_families());
  store.load_or_throw();
  const auto generation = store.generation();
  const auto before = store.current();
  before->rules[0].hits->fetch_add(3);

  std::ofstream(path) << R"({"rules": [{"name": "broken"}]})";
  const auto failed = store.reload();
  EXPECT_FALSE(failed.ok);
  EXPECT_NE(failed.error.find("/rules/0/description"), std::string::npos) << failed.error;
  EXPECT_EQ(store.current(), before);
  EXPECT_EQ(store.generation(), generation);
  EXPECT_EQ(store.reload_failures(), 1u);

  std::ofstream(path) << kKeepalive;
  const auto ok = store.reload();
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.rules, 1u);
  EXPECT_NE(store.current(), before);
  EXPECT_GT(store.generation(), generation);
  // Counters survive a reload by rule name.
  EXPECT_EQ(store.current()->rules[0].hits->load(), 3u);
  EXPECT_EQ(store.hit_counts(), (std::vector<std::pair<std::string, std::uint64_t>>{{"drop-keepalive", 3}}));
}

TEST(Version, ParsesAndOrders) {
  EXPECT_EQ(parse_version("Thunderbird 115.3.1esr")->parts, (std::vector<std::uint32_t>{115, 3, 1}));
  EXPECT_EQ(parse_version("6.1")->parts, (std::vector<std::uint32_t>{6, 1}));
  EXPECT_FALSE(parse_version("beta"));
  EXPECT_TRUE(*parse_version("115.3") < *parse_version("115.10"));
  EXPECT_TRUE(*parse_version("16") <= *parse_version("16.0.0"));
  EXPECT_FALSE(*parse_version("16.0.1") <= *parse_version("16"));
}

}  // namespace
}  // namespace imapscope::policy
