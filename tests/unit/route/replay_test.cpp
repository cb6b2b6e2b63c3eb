#include "proxy/route/replay.hpp"

#include <gtest/gtest.h>

#include "proxy/util/base64.hpp"

namespace imapscope::route {
namespace {

using namespace std::string_literals;

LoginAttempt client_login() {
  LoginAttempt login;
  login.tag = "a7";
  login.mechanism = "LOGIN";
  login.method = "plain";
  login.user = "alice";
  login.secret = "s3cret";
  login.steps = {"a7 LOGIN {5}\r\n", "alice s3cret\r\n"};
  return login;
}

Route route_to(std::optional<std::string> user = {}, std::optional<std::string> password = {}, bool master = false) {
  Route route;
  route.backend = {"127.0.0.1", 1143};
  route.login_user = std::move(user);
  route.login_password = std::move(password);
  route.master = master;
  return route;
}

TEST(Replay, TheClientsOwnStepsUnchanged) {
  EXPECT_EQ(replay_steps(client_login(), route_to(), nullptr), client_login().steps);
  const MasterUser master{"proxy", "mpw"};
  EXPECT_EQ(replay_steps(client_login(), route_to(), &master), client_login().steps);
}

TEST(Replay, OverriddenCredentialsAreOneLogin) {
  EXPECT_EQ(replay_steps(client_login(), route_to("carol.archive", "pw2"), nullptr),
            std::vector<std::string>{"a7 LOGIN \"carol.archive\" \"pw2\"\r\n"});
  // Only the user, or only the password: the client's other half.
  EXPECT_EQ(replay_steps(client_login(), route_to("bob"), nullptr),
            std::vector<std::string>{"a7 LOGIN \"bob\" \"s3cret\"\r\n"});
  EXPECT_EQ(replay_steps(client_login(), route_to({}, "x\"y\\z"), nullptr),
            std::vector<std::string>{"a7 LOGIN \"alice\" \"x\\\"y\\\\z\"\r\n"});
  // Values a quoted string can't hold go as LITERAL+.
  EXPECT_EQ(replay_steps(client_login(), route_to("j\xc3\xb6rg", "a\r\nb"), nullptr),
            std::vector<std::string>{"a7 LOGIN {5+}\r\nj\xc3\xb6rg {4+}\r\na\r\nb\r\n"});
}

TEST(Replay, MasterLoginIsAuthenticatePlain) {
  const MasterUser master{"proxy-master", "mpw"};
  auto steps = replay_steps(client_login(), route_to({}, {}, true), &master);
  ASSERT_EQ(steps.size(), 1u);
  const std::string prefix = "a7 AUTHENTICATE PLAIN ";
  ASSERT_TRUE(steps[0].starts_with(prefix));
  ASSERT_TRUE(steps[0].ends_with("\r\n"));
  auto payload = steps[0].substr(prefix.size(), steps[0].size() - prefix.size() - 2);
  EXPECT_EQ(util::base64_decode(payload), "alice\0proxy-master\0mpw"s);

  steps = replay_steps(client_login(), route_to("carol.archive", {}, true), &master);
  ASSERT_EQ(steps.size(), 1u);
  payload = steps[0].substr(prefix.size(), steps[0].size() - prefix.size() - 2);
  EXPECT_EQ(util::base64_decode(payload), "carol.archive\0proxy-master\0mpw"s);

  EXPECT_TRUE(replay_steps(client_login(), route_to({}, {}, true), nullptr).empty());
}

TEST(Replay, IdKeepsTheClientsFieldsAndDropsForwardingOnes) {
  EXPECT_EQ(replay_id_command("p1", "(\"name\" \"Thunderbird\" \"X-Originating-IP\" \"10.9.9.9\" \"version\" NIL "
                                    "\"x-connected-port\" \"1\" \"x-proxy-ttl\" \"5\" \"x-session-id\" \"s\" "
                                    "\"x-session-ext-id\" \"e\" \"x-forward-foo\" \"f\" \"x-client-transport\" \"TLS\" "
                                    "\"x-other\" \"kept\")"),
            "p1 ID (\"name\" \"Thunderbird\" \"version\" NIL \"x-other\" \"kept\")\r\n");
  EXPECT_EQ(replay_id_command("p1", "NIL"), "p1 ID NIL\r\n");
  EXPECT_EQ(replay_id_command("p1", ""), "p1 ID NIL\r\n");
  EXPECT_EQ(replay_id_command("p1", "(\"x-originating-ip\" \"1.2.3.4\")"), "p1 ID NIL\r\n");
  EXPECT_EQ(replay_id_command("p1", "(garbage"), "p1 ID NIL\r\n");
  // Literals as the client sent them, read and written again.
  EXPECT_EQ(replay_id_command("p1", "(\"name\" {4}\r\nmutt \"os\" {5+}\r\nLi\"ux)"),
            "p1 ID (\"name\" \"mutt\" \"os\" \"Li\\\"ux\")\r\n");
  EXPECT_EQ(replay_id_command("p1", "(\"name\" \"m\\\"x\")"), "p1 ID (\"name\" \"m\\\"x\")\r\n");
}

TEST(Replay, IdWithFieldsTheProxyAdds) {
  EXPECT_EQ(replay_id_command("p1", "(\"name\" \"x\" \"x-originating-ip\" \"6.6.6.6\")",
                              {{"x-originating-ip", "192.0.2.7"}, {"x-originating-port", "50123"}}),
            "p1 ID (\"name\" \"x\" \"x-originating-ip\" \"192.0.2.7\" \"x-originating-port\" \"50123\")\r\n");
  EXPECT_EQ(replay_id_command("p1", "", {{"x-originating-ip", "192.0.2.7"}}),
            "p1 ID (\"x-originating-ip\" \"192.0.2.7\")\r\n");
}

TEST(Replay, ForwardingFieldNames) {
  for (const char* name : {"x-originating-ip", "X-ORIGINATING-PORT", "x-connected-ip", "x-proxy-ttl",
                           "x-session-id", "x-session-ext-id", "x-forward-anything", "x-client-transport"}) {
    EXPECT_TRUE(forwarding_id_field(name)) << name;
  }
  for (const char* name : {"name", "x-session", "x-originating", "x-mailer"}) {
    EXPECT_FALSE(forwarding_id_field(name)) << name;
  }
}

TEST(Replay, RefusalLines) {
  EXPECT_EQ(refusal_line("a1", "Mailbox moved, use imap.example.com"),
            "a1 NO Mailbox moved, use imap.example.com\r\n");
  EXPECT_EQ(refusal_line("a1", "bad\r\n* OK injected\x01"), "a1 NO bad  * OK injected\r\n");
  EXPECT_EQ(refusal_line("a1", ""), "a1 NO Login failed.\r\n");
  EXPECT_EQ(refusal_line("a1", "\r\n "), "a1 NO Login failed.\r\n");
  EXPECT_EQ(unavailable_line("a1", "Backend down"), "a1 NO [UNAVAILABLE] Backend down\r\n");
  EXPECT_EQ(unavailable_line("a1", ""), "a1 NO [UNAVAILABLE] Service temporarily unavailable.\r\n");
  // Bounded, and never cut inside a UTF-8 sequence.
  const std::string long_text = std::string(kMaxRefusalText - 1, 'x') + "\xc3\xa9" + "tail";
  const auto line = refusal_line("a1", long_text);
  EXPECT_EQ(line, "a1 NO " + std::string(kMaxRefusalText - 1, 'x') + "\r\n");
}

TEST(Replay, ImapStrings) {
  EXPECT_EQ(imap_string("plain"), "\"plain\"");
  EXPECT_EQ(imap_string(""), "\"\"");
  EXPECT_EQ(imap_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(imap_string("\xc3\xa9"), "{2+}\r\n\xc3\xa9");
  EXPECT_EQ(imap_string("a\nb"), "{3+}\r\na\nb");
  EXPECT_EQ(imap_string("a\0b"s), "{3+}\r\na\0b"s);
}

}  // namespace
}  // namespace imapscope::route
