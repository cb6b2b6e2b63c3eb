// The pre-login server as a playbook: client bytes in, server bytes out. Every case
// runs whole, one byte at a time and split at every byte boundary, with the same result.
#include "proxy/route/prelogin_server.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "proxy/util/base64.hpp"

namespace imapscope::route {
namespace {

using namespace std::string_literals;

constexpr const char* kCaps = "IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN";

struct Outcome {
  std::string answers;
  std::string left;  // what the server did not consume
  std::optional<LoginAttempt> login;
  bool closed = false;
  unsigned logins = 0;
  std::string client_id;
};

bool operator==(const LoginAttempt& a, const LoginAttempt& b) {
  return a.tag == b.tag && a.mechanism == b.mechanism && a.sasl == b.sasl && a.method == b.method &&
         a.user == b.user && a.authzid == b.authzid && a.secret == b.secret && a.steps == b.steps;
}

// Feeds input in the given pieces, as a relay would: what the server leaves stays in
// front of the next piece.
Outcome run_pieces(const std::vector<std::string_view>& pieces) {
  PreLoginServer server({kCaps});
  Outcome outcome;
  std::string pending;
  for (const auto piece : pieces) {
    pending.append(piece);
    std::string_view view = pending;
    server.feed(view, outcome.answers);
    pending.erase(0, pending.size() - view.size());
  }
  outcome.left = pending;
  if (server.login_ready()) outcome.login = server.take_login();
  outcome.closed = server.closed();
  outcome.logins = server.logins();
  outcome.client_id = server.client_id();
  return outcome;
}

void expect_same(const Outcome& a, const Outcome& b, const std::string& how) {
  EXPECT_EQ(a.answers, b.answers) << how;
  EXPECT_EQ(a.left, b.left) << how;
  EXPECT_EQ(a.login.has_value(), b.login.has_value()) << how;
  if (a.login && b.login) {
    EXPECT_TRUE(*a.login == *b.login) << how;
  }
  EXPECT_EQ(a.closed, b.closed) << how;
  EXPECT_EQ(a.logins, b.logins) << how;
  EXPECT_EQ(a.client_id, b.client_id) << how;
}

// The input whole, then one byte at a time and cut in two at every byte: all alike.
Outcome run(std::string_view input) {
  const Outcome whole = run_pieces({input});
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < input.size(); ++i) bytes.push_back(input.substr(i, 1));
  expect_same(whole, run_pieces(bytes), "one byte at a time");
  if (input.size() < 4096) {
    for (std::size_t cut = 1; cut < input.size(); ++cut) {
      expect_same(whole, run_pieces({input.substr(0, cut), input.substr(cut)}), "cut at " + std::to_string(cut));
    }
  }
  return whole;
}

std::string b64(std::string_view bytes) { return util::base64_encode(bytes); }

TEST(PreLoginServer, Greeting) {
  PreLoginServer server({kCaps});
  EXPECT_EQ(server.greeting(), "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN] IMAP proxy ready.\r\n");
  server.set_capabilities("IMAP4rev1 AUTH=PLAIN");
  EXPECT_EQ(server.greeting(), "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] IMAP proxy ready.\r\n");
}

TEST(PreLoginServer, CapabilityNoopAndUnknown) {
  const auto o = run("a CAPABILITY\r\nb noop\r\nc SELECT INBOX\r\nd UID FETCH 1 FLAGS\r\ne FROB\r\nf\r\n"
                     "g STARTTLS\r\nh CAPABILITY extra\r\n");
  EXPECT_EQ(o.answers,
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\n"
            "a OK Pre-login capabilities listed, post-login capabilities have more.\r\n"
            "b OK NOOP completed.\r\n"
            "c BAD Please log in first.\r\n"
            "d BAD Please log in first.\r\n"
            "e BAD Unknown command.\r\n"
            "f BAD Unknown command.\r\n"
            "g BAD STARTTLS is not available.\r\n"
            "h BAD Invalid arguments.\r\n");
  EXPECT_EQ(o.left, "");
  EXPECT_FALSE(o.login);
}

TEST(PreLoginServer, GarbageGetsUntaggedBad) {
  const auto o = run("\x01\x02\xff junk\r\n+tag NOOP\r\n(x) NOOP\r\n\"q\" NOOP\r\n\r\nok NOOP\r\n");
  EXPECT_EQ(o.answers,
            "* BAD Error in IMAP command received by server.\r\n"
            "* BAD Error in IMAP command received by server.\r\n"
            "* BAD Error in IMAP command received by server.\r\n"
            "* BAD Error in IMAP command received by server.\r\n"
            "ok OK NOOP completed.\r\n");
}

TEST(PreLoginServer, LogoutClosesAndTakesNothingMore) {
  const auto o = run("a LOGOUT\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "* BYE Logging out\r\na OK Logout completed.\r\n");
  EXPECT_TRUE(o.closed);
  EXPECT_EQ(o.left, "b NOOP\r\n");
}

TEST(PreLoginServer, IdIsAnsweredAndKept) {
  auto o = run("a ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n");
  EXPECT_EQ(o.answers, "* ID (\"name\" \"imapscope\")\r\na OK ID completed.\r\n");
  EXPECT_EQ(o.client_id, "(\"name\" \"Thunderbird\" \"version\" NIL)");

  o = run("a ID (\"name\" \"x\")\r\nb ID NIL\r\n");
  EXPECT_EQ(o.client_id, "NIL");  // the last one

  // A literal value: "+" for the synchronising one, kept as sent.
  o = run("a ID (\"name\" {4}\r\nmutt \"os\" {5+}\r\nLinux)\r\n");
  EXPECT_EQ(o.answers, "+ Ready for literal data.\r\n* ID (\"name\" \"imapscope\")\r\na OK ID completed.\r\n");
  EXPECT_EQ(o.client_id, "(\"name\" {4}\r\nmutt \"os\" {5+}\r\nLinux)");

  o = run("a ID (\"name\")\r\nb ID (name \"x\")\r\nc ID\r\nd ID ((\"a\" \"b\"))\r\ne ID (\"a\" \"b\"\r\n");
  EXPECT_EQ(o.answers,
            "a BAD Invalid arguments.\r\nb BAD Invalid arguments.\r\nc BAD Invalid arguments.\r\n"
            "d BAD Invalid arguments.\r\ne BAD Invalid arguments.\r\n");
  EXPECT_EQ(o.client_id, "");
}

TEST(PreLoginServer, LoginWithAtomsAndQuotedStrings) {
  const auto o = run("a1 LOGIN alice \"p a\\\"s\\\\s\"\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->tag, "a1");
  EXPECT_EQ(o.login->mechanism, "LOGIN");
  EXPECT_FALSE(o.login->sasl);
  EXPECT_EQ(o.login->method, "plain");
  EXPECT_EQ(o.login->user, "alice");
  EXPECT_EQ(o.login->secret, "p a\"s\\s");
  EXPECT_EQ(o.login->steps, std::vector<std::string>{"a1 LOGIN alice \"p a\\\"s\\\\s\"\r\n"});
  EXPECT_EQ(o.left, "b NOOP\r\n");  // nothing is taken after a login
  EXPECT_EQ(o.logins, 1u);
}

TEST(PreLoginServer, LoginWithSynchronisingLiterals) {
  const auto o = run("a LOGIN {5}\r\nalice {6}\r\nse\r\nt!\r\n");
  EXPECT_EQ(o.answers, "+ Ready for literal data.\r\n+ Ready for literal data.\r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->user, "alice");
  EXPECT_EQ(o.login->secret, "se\r\nt!");
  EXPECT_EQ(o.login->steps, (std::vector<std::string>{"a LOGIN {5}\r\n", "alice {6}\r\n", "se\r\nt!\r\n"}));
}

TEST(PreLoginServer, LoginWithNonSynchronisingLiterals) {
  const auto o = run("a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n");
  EXPECT_EQ(o.answers, "");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->user, "alice");
  EXPECT_EQ(o.login->secret, "secret");
  EXPECT_EQ(o.login->steps, std::vector<std::string>{"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n"});
}

TEST(PreLoginServer, BareLineFeedsBecomeCrlf) {
  const auto o = run("a LOGIN {5}\nalice pw\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->steps, (std::vector<std::string>{"a LOGIN {5}\r\n", "alice pw\r\n"}));
}

TEST(PreLoginServer, LoginWithBadArguments) {
  const auto o = run("a LOGIN alice\r\nb LOGIN a b c\r\nc LOGIN (a) b\r\nd LOGIN \"a\\b\" c\r\ne LOGIN \"\" pw\r\n"
                     "f LOGIN a%b pw\r\ng LOGIN \"unterminated pw\r\n");
  EXPECT_EQ(o.answers,
            "a BAD Invalid arguments.\r\nb BAD Invalid arguments.\r\nc BAD Invalid arguments.\r\n"
            "d BAD Invalid arguments.\r\ne BAD Invalid arguments.\r\nf BAD Invalid arguments.\r\n"
            "g BAD Invalid arguments.\r\n");
  EXPECT_FALSE(o.login);
  EXPECT_EQ(o.logins, 0u);
}

TEST(PreLoginServer, AuthenticatePlainWithInitialResponse) {
  const std::string ir = b64("\0alice\0secret"s);
  const auto o = run("A AUTHENTICATE PLAIN " + ir + "\r\n");
  EXPECT_EQ(o.answers, "");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->mechanism, "PLAIN");
  EXPECT_TRUE(o.login->sasl);
  EXPECT_EQ(o.login->method, "plain");
  EXPECT_EQ(o.login->user, "alice");
  EXPECT_EQ(o.login->authzid, "");
  EXPECT_EQ(o.login->secret, "secret");
  EXPECT_EQ(o.login->steps, std::vector<std::string>{"A AUTHENTICATE PLAIN " + ir + "\r\n"});
}

TEST(PreLoginServer, AuthenticatePlainWithContinuation) {
  const std::string response = b64("admin\0bob\0pw"s);
  const auto o = run("A authenticate plain\r\n" + response + "\r\n");
  EXPECT_EQ(o.answers, "+ \r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->mechanism, "PLAIN");
  EXPECT_EQ(o.login->user, "bob");
  EXPECT_EQ(o.login->authzid, "admin");
  EXPECT_EQ(o.login->secret, "pw");
  EXPECT_EQ(o.login->steps, (std::vector<std::string>{"A authenticate plain\r\n", response + "\r\n"}));
}

TEST(PreLoginServer, AuthenticateLogin) {
  const std::string user = b64("carol"), pass = b64("pw");
  auto o = run("A AUTHENTICATE LOGIN\r\n" + user + "\r\n" + pass + "\r\n");
  EXPECT_EQ(o.answers, "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->mechanism, "LOGIN");
  EXPECT_EQ(o.login->method, "login");
  EXPECT_EQ(o.login->user, "carol");
  EXPECT_EQ(o.login->secret, "pw");
  EXPECT_EQ(o.login->steps,
            (std::vector<std::string>{"A AUTHENTICATE LOGIN\r\n", user + "\r\n", pass + "\r\n"}));

  o = run("A AUTHENTICATE LOGIN " + user + "\r\n" + pass + "\r\n");  // SASL-IR: the user name
  EXPECT_EQ(o.answers, "+ UGFzc3dvcmQ6\r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->user, "carol");
  EXPECT_EQ(o.login->steps, (std::vector<std::string>{"A AUTHENTICATE LOGIN " + user + "\r\n", pass + "\r\n"}));
}

TEST(PreLoginServer, AuthenticateXOAuth2AndOAuthBearer) {
  const std::string xoauth = b64("user=dave@example.com\x01" "auth=Bearer tok123\x01\x01");
  auto o = run("x AUTHENTICATE XOAUTH2 " + xoauth + "\r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->mechanism, "XOAUTH2");
  EXPECT_EQ(o.login->method, "xoauth2");
  EXPECT_EQ(o.login->user, "dave@example.com");
  EXPECT_EQ(o.login->secret, "tok123");

  const std::string bearer = b64("n,a=erin@example.com,\x01" "auth=Bearer tok456\x01\x01");
  o = run("y AUTHENTICATE OAUTHBEARER\r\n" + bearer + "\r\n");
  EXPECT_EQ(o.answers, "+ \r\n");
  ASSERT_TRUE(o.login);
  EXPECT_EQ(o.login->mechanism, "OAUTHBEARER");
  EXPECT_EQ(o.login->method, "oauthbearer");
  EXPECT_EQ(o.login->user, "erin@example.com");
  EXPECT_EQ(o.login->secret, "tok456");
  EXPECT_EQ(o.login->steps.size(), 2u);
}

TEST(PreLoginServer, AuthenticateCancelledAndRefused) {
  const auto o = run("a AUTHENTICATE PLAIN\r\n*\r\n"
                     "b AUTHENTICATE LOGIN\r\n" + b64("carol") + "\r\n*\r\n"
                     "c AUTHENTICATE CRAM-MD5\r\n"
                     "d AUTHENTICATE PLAIN Zm9v!\r\n"
                     "e AUTHENTICATE PLAIN\r\nnot base64\r\n"
                     "f AUTHENTICATE PLAIN =\r\n"                      // an empty PLAIN message
                     "g AUTHENTICATE PLAIN " + b64("no nuls") + "\r\n"
                     "h AUTHENTICATE\r\n"
                     "i AUTHENTICATE PLAIN a b\r\n"
                     "j AUTHENTICATE \"PLAIN\"\r\n"
                     "k AUTHENTICATE LOGIN\r\nZm9\r\n"
                     "l NOOP\r\n");
  EXPECT_EQ(o.answers,
            "+ \r\na BAD Authentication canceled.\r\n"
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\nb BAD Authentication canceled.\r\n"
            "c NO [CANNOT] Unsupported authentication mechanism.\r\n"
            "d BAD Invalid SASL response.\r\n"
            "+ \r\ne BAD Invalid SASL response.\r\n"
            "f BAD Invalid SASL response.\r\n"
            "g BAD Invalid SASL response.\r\n"
            "h BAD Invalid arguments.\r\n"
            "i BAD Invalid arguments.\r\n"
            "j BAD Invalid arguments.\r\n"
            "+ VXNlcm5hbWU6\r\nk BAD Invalid SASL response.\r\n"
            "l OK NOOP completed.\r\n");
  EXPECT_FALSE(o.login);
}

TEST(PreLoginServer, SaslResponsesAreNotCommands) {
  // A continuation line that looks like a literal header is a (bad) SASL response.
  const auto o = run("a AUTHENTICATE PLAIN\r\nb NOOP {5}\r\nc NOOP\r\n");
  EXPECT_EQ(o.answers, "+ \r\na BAD Invalid SASL response.\r\nc OK NOOP completed.\r\n");
}

TEST(PreLoginServer, SynchronisingLiteralOfOtherCommandsIsRefusedAtOnce) {
  const auto o = run("a APPEND INBOX {500}\r\nb FROB {3}\r\nc NOOP {3}\r\nd NOOP\r\n");
  EXPECT_EQ(o.answers,
            "a BAD Please log in first.\r\nb BAD Unknown command.\r\nc BAD Invalid arguments.\r\n"
            "d OK NOOP completed.\r\n");
}

TEST(PreLoginServer, NonSynchronisingLiteralOfOtherCommandsIsTakenThenRefused) {
  const auto o = run("a SELECT {5+}\r\nINBOX\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "a BAD Please log in first.\r\nb OK NOOP completed.\r\n");
}

TEST(PreLoginServer, OversizedLineIsDropped) {
  const std::string line = "a LOGIN " + std::string(PreLoginServer::kMaxLine + 100, 'x') + " pw\r\n";
  const auto o = run_pieces({line + "b NOOP\r\n"});
  EXPECT_EQ(o.answers, "a BAD Command line too long.\r\nb OK NOOP completed.\r\n");
  // Fed in pieces (the BAD comes before the line ends): the same.
  const auto p = run_pieces({line.substr(0, 65600), line.substr(65600), "b NOOP\r\n"});
  EXPECT_EQ(p.answers, o.answers);
  EXPECT_EQ(p.left, "");
  // A partial line of the limit's size waits.
  const auto q = run_pieces({"a LOGIN " + std::string(PreLoginServer::kMaxLine - 8, 'x')});
  EXPECT_EQ(q.answers, "");
  EXPECT_EQ(q.left.size(), PreLoginServer::kMaxLine);
}

TEST(PreLoginServer, OversizedSaslResponseEndsTheExchange) {
  const std::string response(PreLoginServer::kMaxLine + 1, 'A');
  const auto o = run_pieces({"s AUTHENTICATE PLAIN\r\n" + response + "{5+}\r\nb NOOP\r\n"});
  EXPECT_EQ(o.answers, "+ \r\ns BAD Command line too long.\r\nb OK NOOP completed.\r\n");
  const auto p = run_pieces({"s AUTHENTICATE PLAIN\r\n", response.substr(0, 70000), "{5+}\r\nb NOOP\r\n"});
  EXPECT_EQ(p.answers, o.answers);
}

TEST(PreLoginServer, OversizedLineEndingInLiteralPlusSkipsThePayload) {
  const std::string line = "a LOGIN " + std::string(PreLoginServer::kMaxLine, 'x') + " {5+}\r\nab\r\nc rest\r\n";
  const auto o = run_pieces({line + "b NOOP\r\n"});
  EXPECT_EQ(o.answers, "a BAD Command line too long.\r\nb OK NOOP completed.\r\n");
  std::vector<std::string_view> bytes;
  const std::string all = line + "b NOOP\r\n";
  for (std::size_t i = 0; i < all.size(); ++i) bytes.push_back(std::string_view(all).substr(i, 1));
  expect_same(o, run_pieces(bytes), "one byte at a time");
}

TEST(PreLoginServer, OversizedLiteralIsRefused) {
  const auto big = std::to_string(PreLoginServer::kMaxLine + 1);
  // Synchronising: no "+", the client sends nothing more of it.
  auto o = run("a LOGIN {" + big + "}\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "a BAD Literal too big.\r\nb OK NOOP completed.\r\n");
  // LITERAL+: its payload and the rest of its line are skipped.
  const std::string payload(PreLoginServer::kMaxLine + 1, 'p');
  o = run_pieces({"a LOGIN {" + big + "+}\r\n" + payload + " pw {3+}\r\nxyz\r\nb NOOP\r\n"});
  EXPECT_EQ(o.answers, "a BAD Literal too big.\r\nb OK NOOP completed.\r\n");
  // A size no counter holds: the stream can't be followed.
  o = run("a LOGIN {99999999999999999999999+}\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "a BAD Literal too big.\r\n* BYE Literal too big.\r\n");
  EXPECT_TRUE(o.closed);
  o = run("a LOGIN {" + std::string(50, '9') + "+}\r\nb NOOP\r\n");
  EXPECT_EQ(o.answers, "a BAD Literal too big.\r\n* BYE Literal too big.\r\n");
  EXPECT_TRUE(o.closed);
}

TEST(PreLoginServer, WaitsAfterALoginUntilResumed) {
  PreLoginServer server({kCaps});
  std::string out;
  std::string_view in = "a LOGIN alice pw\r\nb LOGIN bob pw2\r\nc NOOP\r\n";
  server.feed(in, out);
  ASSERT_TRUE(server.login_ready());
  EXPECT_EQ(server.logins(), 1u);
  EXPECT_EQ(server.take_login().user, "alice");
  EXPECT_FALSE(server.login_ready());
  server.feed(in, out);  // still waiting for the verdict
  EXPECT_EQ(in, "b LOGIN bob pw2\r\nc NOOP\r\n");
  server.resume();
  server.feed(in, out);
  ASSERT_TRUE(server.login_ready());
  EXPECT_EQ(server.logins(), 2u);
  EXPECT_EQ(server.take_login().user, "bob");
  server.resume();
  server.feed(in, out);
  EXPECT_EQ(out, "c OK NOOP completed.\r\n");
  EXPECT_EQ(in, "");
}

TEST(PreLoginServer, CapabilitiesLearntLater) {
  PreLoginServer server({kCaps});
  server.set_capabilities("IMAP4rev2 AUTH=PLAIN");
  std::string out;
  std::string_view in = "a CAPABILITY\r\n";
  server.feed(in, out);
  EXPECT_EQ(out, "* CAPABILITY IMAP4rev2 AUTH=PLAIN\r\n"
                 "a OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
}

// Random mixtures of command pieces: never a crash, always the same whichever the split,
// and every answer a whole line.
TEST(PreLoginServer, RandomInputIsSafe) {
  const std::vector<std::string> pieces = {
      "a ", "LOGIN ", "AUTHENTICATE ", "PLAIN ", "LOGIN", "ID ", "(", ")", "\"", "\\", "{3}", "{2+}", "{0}",
      "\r\n", "\n", "*", "=", "AGFsaWNlAHB3", "x", " ", "NIL", "NOOP", "~{1}", "\x01", "\0"s, "\xff", "CAPABILITY"};
  std::uint32_t seed = 12345;
  auto next = [&seed] {
    seed = seed * 1103515245 + 12345;
    return (seed >> 16) & 0x7fff;
  };
  for (int round = 0; round < 300; ++round) {
    std::string input;
    const auto n = 1 + next() % 30;
    for (unsigned i = 0; i < n; ++i) input += pieces[next() % pieces.size()];
    const auto o = run(input);
    if (!o.answers.empty()) {
      EXPECT_TRUE(o.answers.ends_with("\r\n")) << input;
    }
  }
}

}  // namespace
}  // namespace imapscope::route
