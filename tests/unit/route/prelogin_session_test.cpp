// The pre-login server behind a real Session, wired as the relay wires them: the
// Session's to_server() bytes go to the server, its answers come back through
// feed_server(). The Session's decoders must follow every exchange (literals, SASL
// continuations, cancels) and hand the client exactly the server's answers.
#include <gtest/gtest.h>

#include <string>

#include "proxy/route/prelogin_server.hpp"
#include "proxy/session/session.hpp"
#include "proxy/util/base64.hpp"

namespace imapscope::route {
namespace {

constexpr const char* kCaps = "IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN";

std::string take(std::string& s) {
  std::string out;
  out.swap(s);
  return out;
}

struct Wired {
  Wired() : session(settings()), server({kCaps}) {
    std::string greeting = server.greeting();
    std::string_view view = greeting;
    session.feed_server(view);
    greeting_seen = take(session.to_client());
  }
  static session::SessionSettings settings() {
    session::SessionSettings s;
    s.client_leg.tls = true;
    return s;
  }

  // What the client gets for these bytes.
  std::string client(std::string_view bytes) {
    from_client += bytes;
    pump();
    return take(client_saw);
  }
  // The backend's answer to a replayed login, relayed to the client.
  std::string backend(std::string_view bytes) {
    session.feed_server(bytes);
    EXPECT_TRUE(bytes.empty());
    return take(session.to_client());
  }

  void pump() {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      std::string_view c = from_client;
      session.feed_client(c);
      moved = moved || c.size() != from_client.size();
      from_client.erase(0, from_client.size() - c.size());
      to_server += take(session.to_server());
      std::string answers;
      std::string_view s = to_server;
      server.feed(s, answers);
      to_server.erase(0, to_server.size() - s.size());
      if (!answers.empty()) {
        std::string_view a = answers;
        session.feed_server(a);
        EXPECT_TRUE(a.empty());
        moved = true;
      }
      client_saw += take(session.to_client());
      if (!moved) return;
    }
  }

  session::Session session;
  PreLoginServer server;
  std::string greeting_seen, from_client, to_server, client_saw;
};

TEST(PreLoginSession, GreetingIdAndLoginWithLiterals) {
  Wired w;
  EXPECT_TRUE(w.greeting_seen.starts_with("* OK [CAPABILITY IMAP4rev1")) << w.greeting_seen;
  EXPECT_EQ(w.client("i ID (\"name\" \"mutt\")\r\n"), "* ID (\"name\" \"imapscope\")\r\ni OK ID completed.\r\n");
  EXPECT_EQ(w.client("a LOGIN {5}\r\n"), "+ Ready for literal data.\r\n");
  EXPECT_EQ(w.client("alice {2}\r\n"), "+ Ready for literal data.\r\n");
  EXPECT_EQ(w.client("pw\r\n"), "");
  ASSERT_TRUE(w.server.login_ready());
  const auto login = w.server.take_login();
  EXPECT_EQ(login.user, "alice");
  EXPECT_EQ(login.secret, "pw");
  EXPECT_EQ(login.steps, (std::vector<std::string>{"a LOGIN {5}\r\n", "alice {2}\r\n", "pw\r\n"}));
  EXPECT_EQ(w.server.client_id(), "(\"name\" \"mutt\")");
  // The backend's OK reaches the client through the Session, which now knows it is logged in.
  EXPECT_EQ(w.backend("a OK Logged in\r\n"), "a OK Logged in\r\n");
  EXPECT_TRUE(w.session.state().logged_in());
}

TEST(PreLoginSession, AuthenticateLoginThenRefusedThenPlain) {
  Wired w;
  EXPECT_EQ(w.client("a AUTHENTICATE LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
  EXPECT_EQ(w.session.state().client_input(), imap::ClientInput::SaslResponse);
  EXPECT_EQ(w.client(util::base64_encode("carol") + "\r\n"), "+ UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(w.client(util::base64_encode("wrong") + "\r\n"), "");
  ASSERT_TRUE(w.server.login_ready());
  EXPECT_EQ(w.server.take_login().steps.size(), 3u);
  // The backend refused it: the client has its NO, the server takes commands again.
  EXPECT_EQ(w.backend("a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
            "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  w.server.resume();
  EXPECT_FALSE(w.session.state().logged_in());
  EXPECT_EQ(w.client("b AUTHENTICATE PLAIN\r\n"), "+ \r\n");
  EXPECT_EQ(w.client("*\r\n"), "b BAD Authentication canceled.\r\n");
  EXPECT_EQ(w.session.state().client_input(), imap::ClientInput::Commands);
  const std::string ir = util::base64_encode(std::string("\0carol\0right", 12));
  EXPECT_EQ(w.client("c AUTHENTICATE PLAIN " + ir + "\r\n"), "");
  ASSERT_TRUE(w.server.login_ready());
  EXPECT_EQ(w.server.logins(), 2u);
  EXPECT_EQ(w.server.take_login().secret, "right");
}

TEST(PreLoginSession, RefusedLiteralAndLogout) {
  Wired w;
  EXPECT_EQ(w.client("a APPEND INBOX {3}\r\n"), "a BAD Please log in first.\r\n");
  EXPECT_EQ(w.session.state().client_input(), imap::ClientInput::Commands);
  EXPECT_EQ(w.client("b CAPABILITY\r\n"),
            "* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN\r\n"
            "b OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
  EXPECT_EQ(w.client("c LOGOUT\r\n"), "* BYE Logging out\r\nc OK Logout completed.\r\n");
  EXPECT_TRUE(w.server.closed());
}

}  // namespace
}  // namespace imapscope::route
