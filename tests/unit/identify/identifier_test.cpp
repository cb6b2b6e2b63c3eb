// Client identification: the mechanism on a small signatures file of the test's
// own, then errors in signature files.
#include <gtest/gtest.h>

#include <string>

#include "proxy/identify/identifier.hpp"
#include "proxy/session/session.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::identify {
namespace {

const char* kSignatures = R"json({
  "families": {"alpha": "Alpha Mail", "beta": "Beta", "gamma": "Gamma"},
  "id": [
    {"family": "beta", "match": {"name": "^Alpha$", "os": "android"}, "source": "test"},
    {"family": "alpha", "match": {"name": "^Alpha$"}, "version_pattern": "^([0-9.]+)", "source": "test"}
  ],
  "heuristics": [
    {"family": "alpha", "tag": "^a[0-9]{4}$", "counter_start": 0, "counter_step": 1, "command_case": "upper",
     "confidence": 0.6, "source": "test"},
    {"family": "gamma", "tag": "^[0-9]+$", "counter_start": 1, "counter_step": 1, "opening": ["CAPABILITY", "LOGIN"],
     "command_case": "lower", "confidence": 0.6, "source": "test"},
    {"family": "beta", "tag": "^[0-9]+$", "counter_start": 1, "counter_step": 1, "command_case": "upper",
     "confidence": 0.6, "source": "test"}
  ]
})json";

const Signatures& signatures() {
  static const Signatures s = parse_signatures(nlohmann::json::parse(kSignatures), "test.json");
  return s;
}

// The client side of a session: the greeting, then the client's bytes.
ClientInfo identify_client(std::string_view commands) {
  session::SessionSettings settings;
  settings.signatures = &signatures();
  session::Session session(settings);
  std::string_view greeting = "* OK ready\r\n";
  session.feed_server(greeting);
  session.feed_client(commands);
  EXPECT_TRUE(commands.empty()) << commands;
  return session.client();
}

TEST(Identifier, IdNamesTheClient) {
  auto info = identify_client("x1 ID (\"name\" \"Alpha\" \"version\" \"3.2.1 (build 7)\")\r\n");
  EXPECT_EQ(info.family, "alpha");
  EXPECT_EQ(info.version, "3.2.1");
  EXPECT_EQ(info.method, IdMethod::Id);
  EXPECT_EQ(info.confidence, 1.0);
  // The first matching signature wins; field names are case-insensitive.
  info = identify_client("x1 ID (\"NAME\" \"Alpha\" \"OS\" \"Android\" \"version\" \"9\")\r\n");
  EXPECT_EQ(info.family, "beta");
  EXPECT_EQ(info.version, "9");
  // A client that names itself but matches no signature is "other", with its version.
  info = identify_client("x1 ID (\"name\" \"Zeta\" \"version\" \"1.0\")\r\n");
  EXPECT_EQ(info.family, "other");
  EXPECT_EQ(info.version, "1.0");
  EXPECT_EQ(info.method, IdMethod::Id);
}

TEST(Identifier, HeuristicsFromTagsCaseAndOpening) {
  auto info = identify_client("a0000 CAPABILITY\r\n");
  EXPECT_EQ(info.family, "alpha");
  EXPECT_EQ(info.method, IdMethod::Heuristic);
  EXPECT_GT(info.confidence, 0.2);
  EXPECT_LT(info.confidence, 1.0);
  // Numeric tags: the command case and the opening tell gamma from beta.
  EXPECT_EQ(identify_client("1 capability\r\n2 login u p\r\n").family, "gamma");
  EXPECT_EQ(identify_client("1 CAPABILITY\r\n2 LOGIN u p\r\n").family, "beta");
  // A tag shape no signature has stays unknown.
  info = identify_client("zz-1 NOOP\r\n");
  EXPECT_EQ(info.family, "unknown");
  EXPECT_EQ(info.method, IdMethod::Unknown);
}

TEST(Identifier, TheGuessGrowsSureAndIdUpgradesIt) {
  const auto one = identify_client("a0000 CAPABILITY\r\n");
  const auto three = identify_client("a0000 CAPABILITY\r\na0001 NOOP\r\na0002 NOOP\r\n");
  EXPECT_EQ(three.family, "alpha");
  EXPECT_GT(three.confidence, one.confidence);
  // A counter that does not step as the signature says lowers the fit.
  const auto jumpy = identify_client("a0000 CAPABILITY\r\na0005 NOOP\r\na0009 NOOP\r\n");
  EXPECT_LT(jumpy.confidence, three.confidence);
  // ID later in the session replaces the guess.
  const auto upgraded = identify_client("a0000 CAPABILITY\r\na0001 ID (\"name\" \"Alpha\" \"os\" \"Android\")\r\n");
  EXPECT_EQ(upgraded.family, "beta");
  EXPECT_EQ(upgraded.method, IdMethod::Id);
  // "ID NIL" says nothing: the heuristics go on.
  EXPECT_EQ(identify_client("a0000 ID NIL\r\n").method, IdMethod::Heuristic);
}

std::string error_of(const std::string& text) {
  try {
    (void)parse_signatures(nlohmann::json::parse(text), "clients.json");
  } catch (const util::InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Signatures, ErrorsNameFilePointerAndReason) {
  EXPECT_EQ(error_of(R"({"families": {"a": "A"}, "id": [{"family": "b", "match": {"name": "x"}}], "heuristics": []})"),
            "clients.json: /id/0/family: \"b\" is not declared in /families");
  EXPECT_EQ(error_of(R"({"families": {"a": "A"}, "id": [], "heuristics": [{"family": "a", "tag": "(["}]})")
                .rfind("clients.json: /heuristics/0/tag: is not a valid regular expression", 0),
            0u);
  EXPECT_EQ(error_of(R"({"families": {"a": "A"}, "id": [], "heuristics": [{"family": "a", "tag": "x", "colour": 1}]})"),
            "clients.json: /heuristics/0/colour: unknown setting");
  EXPECT_EQ(error_of(R"({"families": {"Bad Name": "A"}, "id": [], "heuristics": []})")
                .rfind("clients.json: /families/Bad Name: a family name is", 0),
            0u);
  EXPECT_EQ(error_of(R"({"families": {"other": "A"}, "id": [], "heuristics": []})"),
            "clients.json: /families/other: is reserved");
}

}  // namespace
}  // namespace imapscope::identify
