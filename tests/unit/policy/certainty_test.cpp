// How sure identification must be for a rule: identified_by / min_confidence, their
// default, the loader's checks, and the record of rules that acted on a guess that
// turned out wrong.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "proxy/policy/matcher.hpp"
#include "tests/unit/policy/rules_fixture.hpp"

namespace imapscope::policy {
namespace {

using identify::ClientInfo;
using identify::IdMethod;

const Match& first_match(const std::unique_ptr<RuleStore>& store) { return store->current()->rules[0].match; }

TEST(Certainty, AGuessActsOnlyWhenSureEnoughByDefault) {
  auto store = testing::store_with(R"([{"name": "tb", "description": "d",
    "match": {"direction": "server", "client": ["thunderbird"]}, "actions": {"delay_ms": 1}}])");
  const Match& m = first_match(store);
  EXPECT_EQ(m.min_confidence, kDefaultRuleMinConfidence);
  EXPECT_FALSE(m.id_only);
  EXPECT_TRUE(applies_to(m, ClientInfo{"thunderbird", "115", IdMethod::Id, 1}));
  EXPECT_TRUE(applies_to(m, ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.7}));
  EXPECT_FALSE(applies_to(m, ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.69}));
}

TEST(Certainty, RulesSayWhatTheyNeed) {
  auto id_only = testing::store_with(R"([{"name": "tb", "description": "d",
    "match": {"direction": "server", "client": ["thunderbird"], "identified_by": "id"}, "actions": {"delay_ms": 1}}])");
  EXPECT_TRUE(applies_to(first_match(id_only), ClientInfo{"thunderbird", "115", IdMethod::Id, 1}));
  EXPECT_FALSE(applies_to(first_match(id_only), ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.99}));

  auto weak = testing::store_with(R"([{"name": "py", "description": "d",
    "match": {"direction": "server", "client": ["python_imaplib"], "identified_by": "heuristic",
              "min_confidence": 0.5}, "actions": {"delay_ms": 1}}])");
  EXPECT_TRUE(applies_to(first_match(weak), ClientInfo{"python_imaplib", "", IdMethod::Heuristic, 0.5}));
  EXPECT_FALSE(applies_to(first_match(weak), ClientInfo{"python_imaplib", "", IdMethod::Heuristic, 0.45}));
  EXPECT_FALSE(applies_to(first_match(weak), ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.9}));

  // A rule for every client does not depend on identification; nor does one for unknown clients.
  auto anyone = testing::store_with(R"([{"name": "all", "description": "d",
    "match": {"direction": "server"}, "actions": {"delay_ms": 1}}])");
  EXPECT_TRUE(applies_to(first_match(anyone), ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.21}));
  auto unknown = testing::store_with(R"([{"name": "u", "description": "d",
    "match": {"direction": "server", "client": ["unknown"]}, "actions": {"delay_ms": 1}}])");
  EXPECT_TRUE(applies_to(first_match(unknown), ClientInfo{}));
}

TEST(Certainty, TheLoaderRefusesWhatCantWork) {
  struct Case {
    const char* match;
    const char* expected;
  };
  const Case cases[] = {
      {R"({"direction": "server", "identified_by": "id"})",
       "/rules/0/match/identified_by: needs \"client\": a rule for every client doesn't depend on identification"},
      {R"({"direction": "server", "min_confidence": 0.8})", "/rules/0/match/min_confidence: needs \"client\""},
      {R"({"direction": "server", "client": ["thunderbird"], "identified_by": "guess"})",
       "/rules/0/match/identified_by: "},
      {R"({"direction": "server", "client": ["thunderbird"], "identified_by": "id", "min_confidence": 0.8})",
       "/rules/0/match/min_confidence: applies to \"identified_by\": \"heuristic\""},
      {R"({"direction": "server", "client": ["thunderbird"], "min_confidence": 1.5})",
       "/rules/0/match/min_confidence: "},
      {R"({"direction": "server", "client": ["unknown"], "identified_by": "id"})",
       "/rules/0/match/identified_by: \"id\" can't go with client \"unknown\""},
      {R"({"direction": "server", "client": ["thunderbird"], "method": ["heuristic"], "identified_by": "id"})",
       "/rules/0/match/identified_by: \"id\" contradicts \"method\""},
  };
  for (const auto& c : cases) {
    const auto error = testing::load_error(std::string(R"({"rules": [{"name": "n", "description": "d", "match": )") +
                                           c.match + R"(, "actions": {"delay_ms": 1}}]})");
    EXPECT_NE(error.find("rules.json"), std::string::npos) << error;
    EXPECT_NE(error.find(c.expected), std::string::npos) << "got: " << error << "\nwanted: " << c.expected;
  }
}

TEST(Certainty, EveryShippedRuleForAClientSaysWhatItNeeds) {
  std::size_t checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(IMAPSCOPE_RULES_DIR) + "/quirks")) {
    std::ifstream in(entry.path());
    const auto document = nlohmann::json::parse(in);
    for (const auto& rule : document.at("rules")) {
      const auto& match = rule.at("match");
      if (!match.contains("client")) continue;
      EXPECT_TRUE(match.contains("identified_by")) << entry.path() << " " << rule.at("name");
      ++checked;
    }
  }
  EXPECT_GE(checked, 9u);
}

TEST(OverturnedGuess, RulesThatActedOnAWrongGuessAreRecorded) {
  auto store = testing::store_with(R"([
    {"name": "apple-only", "description": "d", "match": {"direction": "server", "client": ["apple_mail"],
     "identified_by": "heuristic", "min_confidence": 0.5}, "actions": {"delay_ms": 1}},
    {"name": "everyone", "description": "d", "match": {"direction": "server"}, "actions": {"delay_ms": 1}}])");
  SessionRules rules(*store);
  MessageFacts data;
  data.kind = MessageKind::Data;
  data.line = "* CAPABILITY IMAP4rev1";
  rules.refresh(ClientInfo{"apple_mail", "", IdMethod::Heuristic, 0.54}, 1);
  (void)rules.evaluate(data);
  ASSERT_EQ(rules.hits().size(), 2u);
  EXPECT_TRUE(rules.overturned().empty());
  // The ID names another family: the rule that acted on the guess is recorded; the
  // rule for everyone did not depend on the guess.
  ClientInfo id{"other", "1.0", IdMethod::Id, 1, "Some Tester"};
  rules.refresh(id, 2);
  ASSERT_EQ(rules.overturned().size(), 1u);
  const auto& o = rules.overturned()[0];
  EXPECT_EQ(o.guessed, "apple_mail");
  EXPECT_EQ(o.identified, "other");
  EXPECT_EQ(o.method, IdMethod::Id);
  EXPECT_EQ(o.rules, std::vector<std::string>{"apple-only"});
  // Nothing more to record afterwards.
  rules.refresh(id, 3);
  EXPECT_EQ(rules.overturned().size(), 1u);
}

TEST(OverturnedGuess, AnIdThatConfirmsTheGuessRecordsNothing) {
  auto store = testing::store_with(R"([{"name": "apple-only", "description": "d", "match": {"direction": "server",
     "client": ["apple_mail"], "identified_by": "heuristic", "min_confidence": 0.5}, "actions": {"delay_ms": 1}}])");
  SessionRules rules(*store);
  MessageFacts data;
  data.kind = MessageKind::Data;
  rules.refresh(ClientInfo{"apple_mail", "", IdMethod::Heuristic, 0.54}, 1);
  (void)rules.evaluate(data);
  rules.refresh(ClientInfo{"apple_mail", "16.0", IdMethod::Id, 1}, 2);
  EXPECT_TRUE(rules.overturned().empty());
  // A guess no rule acted on is not worth a line either.
  SessionRules quiet(*store);
  quiet.refresh(ClientInfo{"thunderbird", "", IdMethod::Heuristic, 0.54}, 1);
  (void)quiet.evaluate(data);
  quiet.refresh(ClientInfo{"other", "1", IdMethod::Id, 1}, 2);
  EXPECT_TRUE(quiet.overturned().empty());
}

}  // namespace
}  // namespace imapscope::policy
