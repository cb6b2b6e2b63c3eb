// The session's side of the login penalty, as playbooks: a login held for as long as
// the gate says (and the commands behind it), the credentials folded into the gate's
// digest as they pass (LOGIN arguments, SASL lines), the server's answer reported.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/session/session.hpp"

namespace imapscope::session {
namespace {

using namespace std::chrono_literals;

struct RecordingGate final : LoginGate {
  std::chrono::milliseconds wait{0};
  int asked = 0;
  std::vector<std::uint64_t> failures;
  int successes = 0;
  std::chrono::milliseconds login_delay() override {
    ++asked;
    return wait;
  }
  // A digest that shows what was folded (the real one is keyed SipHash).
  std::uint64_t fold_credentials(std::uint64_t so_far, std::string_view piece) const override {
    std::uint64_t h = so_far * 1'000'003 + 7;
    for (unsigned char c : piece) h = h * 131 + c;
    return h;
  }
  void login_failed(std::uint64_t credentials) override { failures.push_back(credentials); }
  void login_succeeded() override { ++successes; }
};

struct Gated {
  Gated() {
    SessionSettings s;
    s.client_leg.tls = true;
    s.login_gate = &gate;
    session.emplace(s);
    std::string_view greeting = "* OK ready\r\n";
    session->feed_server(greeting);
    session->to_client().clear();
  }
  std::string client(std::string_view bytes) {
    session->feed_client(bytes);
    left = std::string(bytes);
    return std::exchange(session->to_server(), {});
  }
  std::string server(std::string_view bytes) {
    session->feed_server(bytes);
    return std::exchange(session->to_client(), {});
  }
  RecordingGate gate;
  std::optional<Session> session;
  std::string left;  // client bytes the session didn't take (held back)
};

TEST(LoginGate, FailuresAndSuccessesAreReportedWithADigestOfTheCredentials) {
  Gated g;
  EXPECT_EQ(g.client("a1 LOGIN alice wrong\r\n"), "a1 LOGIN alice wrong\r\n");
  EXPECT_EQ(g.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(g.client("a2 LOGIN alice wrong\r\n"), "a2 LOGIN alice wrong\r\n");
  g.server("a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  g.client("a3 LOGIN alice other\r\n");
  g.server("a3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  ASSERT_EQ(g.gate.failures.size(), 3u);
  EXPECT_EQ(g.gate.failures[0], g.gate.failures[1]);  // the same credentials, the same digest
  EXPECT_NE(g.gate.failures[0], g.gate.failures[2]);
  g.client("a4 LOGIN alice secret\r\n");
  g.server("a4 OK Logged in\r\n");
  EXPECT_EQ(g.gate.successes, 1);
  EXPECT_EQ(g.gate.asked, 4);
  // Other commands and other tagged answers are none of the gate's business.
  g.client("a5 NOOP\r\n");
  g.server("a5 NO whatever\r\n");
  EXPECT_EQ(g.gate.failures.size(), 3u);
}

TEST(LoginGate, AHeldLoginAndTheCommandsBehindItWaitForTheResume) {
  Gated g;
  g.gate.wait = 2000ms;
  EXPECT_EQ(g.client("a1 LOGIN alice secret\r\na2 CAPABILITY\r\n"), "");
  const auto request = g.session->take_delay_request();
  ASSERT_TRUE(request);
  EXPECT_EQ(request->direction, policy::Direction::Client);
  EXPECT_EQ(request->duration, 2000ms);
  EXPECT_EQ(g.left, "a2 CAPABILITY\r\n");  // not read while the login waits
  g.session->resume(policy::Direction::Client);
  EXPECT_EQ(std::exchange(g.session->to_server(), {}), "a1 LOGIN alice secret\r\n");
  EXPECT_EQ(g.client(g.left), "a2 CAPABILITY\r\n");
}

TEST(LoginGate, ALiteralLoginIsHeldBeforeItsFirstPart) {
  Gated g;
  g.gate.wait = 4000ms;
  EXPECT_EQ(g.client("a1 LOGIN {5}\r\n"), "");  // the server sends no "+" before the wait is over
  ASSERT_TRUE(g.session->take_delay_request());
  g.session->resume(policy::Direction::Client);
  EXPECT_EQ(std::exchange(g.session->to_server(), {}), "a1 LOGIN {5}\r\n");
  EXPECT_EQ(g.server("+ OK\r\n"), "+ OK\r\n");
  EXPECT_EQ(g.client("alice {6}\r\n"), "alice {6}\r\n");
  g.server("+ OK\r\n");
  EXPECT_EQ(g.client("wrong!\r\n"), "wrong!\r\n");
  g.server("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(g.gate.failures.size(), 1u);
  EXPECT_EQ(g.gate.asked, 1);
}

TEST(LoginGate, SaslLinesAreFoldedIn) {
  Gated g;
  auto attempt = [&](std::string_view tag, std::string_view response) {
    g.client(std::string(tag) + " AUTHENTICATE PLAIN\r\n");
    g.server("+ \r\n");
    g.client(std::string(response) + "\r\n");
    g.server(std::string(tag) + " NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  };
  attempt("a1", "AGFsaWNlAHdyb25n");
  attempt("a2", "AGFsaWNlAHdyb25n");
  attempt("a3", "AGFsaWNlAG90aGVy");
  ASSERT_EQ(g.gate.failures.size(), 3u);
  EXPECT_EQ(g.gate.failures[0], g.gate.failures[1]);
  EXPECT_NE(g.gate.failures[0], g.gate.failures[2]);
  // SASL-IR: the initial response is an argument.
  g.client("a4 AUTHENTICATE PLAIN AGFsaWNlAHdyb25n\r\n");
  g.server("a4 OK Logged in\r\n");
  EXPECT_EQ(g.gate.successes, 1);
}

}  // namespace
}  // namespace imapscope::session
