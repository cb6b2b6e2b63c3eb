// The map file: the spec's example routes each kind of pattern in its precedence,
// every mistake is named with its file, line and column, and a million-line map loads.
#include "proxy/route/route_map.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "proxy/util/json_reader.hpp"

namespace imapscope::route {
namespace {

constexpr std::string_view kExample = R"(# pattern            backend              options
alice@example.com    127.0.0.1:1143
bob                  127.0.0.1:2143       starttls
@example.org         10.0.0.5:993         tls
*@*.example.net      10.0.0.6:143
*                    127.0.0.1:1143                 # the default
carol                127.0.0.1:2143       user=carol.archive
dave                 -  "Mailbox moved, use imap.example.com"   # refused, text to the client
)";

RouteMap example() { return RouteMap::parse(kExample, "routes.map", BackendTls::None); }

std::string error_of(std::string_view text) {
  try {
    RouteMap::parse(text, "m.map", BackendTls::None);
  } catch (const util::InputError& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(RouteMap, TheSpecExampleRoutesEachKindOfPattern) {
  const auto map = example();
  EXPECT_EQ(map.entries(), 7u);
  auto alice = map.lookup("Alice@Example.COM");  // case-insensitive
  ASSERT_EQ(alice.status, LookupStatus::Routed);
  EXPECT_EQ(alice.route.backend, (Backend{"127.0.0.1", 1143, BackendTls::None}));
  EXPECT_FALSE(alice.route.login_user);
  EXPECT_EQ(map.lookup("bob").route.backend, (Backend{"127.0.0.1", 2143, BackendTls::Starttls}));
  EXPECT_EQ(map.lookup("zed@example.org").route.backend, (Backend{"10.0.0.5", 993, BackendTls::Implicit}));
  EXPECT_EQ(map.lookup("x@mail.example.net").route.backend.host, "10.0.0.6");
  EXPECT_EQ(map.lookup("x@example.net").route.backend.host, "127.0.0.1");  // the glob wants a subdomain
  EXPECT_EQ(map.lookup("x@sub.example.org").route.backend.port, 1143);     // @domain: that domain only
  const auto carol = map.lookup("CAROL");
  EXPECT_EQ(carol.route.login_user, "carol.archive");
  EXPECT_FALSE(carol.route.master);
  const auto dave = map.lookup("dave");
  EXPECT_EQ(dave.status, LookupStatus::Refused);
  EXPECT_EQ(dave.message, "Mailbox moved, use imap.example.com");
  EXPECT_EQ(map.lookup("nobody").route.backend.port, 1143);
}

TEST(RouteMap, PrecedenceIsExactThenDomainThenGlobsInOrderThenDefault) {
  const auto map = RouteMap::parse(
      "*           10.0.0.9:143\n"
      "a*@x.org    10.0.0.3:143\n"
      "*@x.org     10.0.0.4:143\n"
      "@x.org      10.0.0.2:143\n"
      "ann@x.org   10.0.0.1:143\n",
      "p.map", BackendTls::None);
  EXPECT_EQ(map.lookup("ann@x.org").route.backend.host, "10.0.0.1");
  EXPECT_EQ(map.lookup("amy@x.org").route.backend.host, "10.0.0.2");  // domain before globs
  EXPECT_EQ(map.lookup("amy@y.x.org").route.backend.host, "10.0.0.9");
  const auto globs = RouteMap::parse("a*@x.*  10.0.0.3:143\n*@x.*  10.0.0.4:143\n", "g.map", BackendTls::None);
  EXPECT_EQ(globs.lookup("amy@x.org").route.backend.host, "10.0.0.3");  // the first glob in the file
  EXPECT_EQ(globs.lookup("bo@x.org").route.backend.host, "10.0.0.4");
  const auto none = globs.lookup("bo@y.org");
  EXPECT_EQ(none.status, LookupStatus::Refused);  // as a passdb refuses a user it doesn't know
  EXPECT_EQ(none.message, "[AUTHENTICATIONFAILED] Authentication failed.");
}

TEST(RouteMap, BackendsAreListedOnceInFileOrder) {
  const auto backends = example().backends();
  ASSERT_EQ(backends.size(), 4u);
  EXPECT_EQ(backends[0].name(), "127.0.0.1:1143");
  EXPECT_EQ(backends[1].name(), "127.0.0.1:2143");
  EXPECT_EQ(backends[2].name(), "10.0.0.5:993");
  EXPECT_EQ(backends[3].name(), "10.0.0.6:143");
}

TEST(RouteMap, TlsDefaultsAndPortsFollowTheOptions) {
  const auto map = RouteMap::parse("a [2001:db8::1]:1993 tls\nb imap.example.com\nc imap2.example.com tls\nd 10.0.0.1:143 plain\n",
                                   "t.map", BackendTls::Starttls);
  EXPECT_EQ(map.lookup("a").route.backend, (Backend{"2001:db8::1", 1993, BackendTls::Implicit}));
  EXPECT_EQ(map.lookup("a").route.backend.name(), "[2001:db8::1]:1993");
  EXPECT_EQ(map.lookup("b").route.backend, (Backend{"imap.example.com", 143, BackendTls::Starttls}));
  EXPECT_EQ(map.lookup("c").route.backend, (Backend{"imap2.example.com", 993, BackendTls::Implicit}));
  EXPECT_EQ(map.lookup("d").route.backend.tls, BackendTls::None);
}

TEST(RouteMap, RefusalTextMayHoldQuotesAndHashes) {
  const auto map = RouteMap::parse("x - \"Moved: see \\\"#help\\\" on the site\"\ny -\n", "r.map", BackendTls::None);
  EXPECT_EQ(map.lookup("x").message, "Moved: see \"#help\" on the site");
  EXPECT_EQ(map.lookup("y").status, LookupStatus::Refused);
  EXPECT_FALSE(map.lookup("y").message.empty());
  EXPECT_TRUE(map.backends().empty());
}

TEST(RouteMap, MistakesNameFileLineAndColumn) {
  EXPECT_EQ(error_of("a 10.0.0.1:143\n\nA   10.0.0.2:143\n"), "m.map:3:1: duplicate pattern \"A\" (first on line 1)");
  EXPECT_EQ(error_of("a 10.0.0.1:70000\n"), "m.map:1:12: bad port \"70000\" (1 to 65535)");
  EXPECT_EQ(error_of("# c\na   10.0.0.1:0\n"), "m.map:2:14: bad port \"0\" (1 to 65535)");
  EXPECT_EQ(error_of("a 10.0.0.1:143 tsl\n"), "m.map:1:16: unknown option \"tsl\" (tls, starttls, plain, user=NAME)");
  // No password to check the client's against: a master login would let anyone in.
  EXPECT_NE(error_of("a 10.0.0.1:143 master\n").find("m.map:1:16: master: a map can't check the client's password"),
            std::string::npos);
  EXPECT_EQ(error_of("a 10.0.0.1:143 tls starttls\n"), "m.map:1:20: a second TLS option (tls, starttls, plain: one at most)");
  EXPECT_EQ(error_of("alice\n"), "m.map:1:6: a backend (host:port, or - to refuse) must follow the pattern");
  EXPECT_EQ(error_of("a - \"open\n"), "m.map:1:5: the quoted text does not end (a \" is missing)");
  EXPECT_EQ(error_of("a - words\n"), "m.map:1:5: the refusal's text goes in quotes: - \"text for the client\"");
  EXPECT_EQ(error_of("a bad/host:1\n"), "m.map:1:3: \"bad/host\" is not an IP address or a host name");
  EXPECT_EQ(error_of("a 2001:db8::1:143\n"), "m.map:1:3: an IPv6 address goes in brackets: [2001:db8::1:143]:PORT");
  EXPECT_EQ(error_of("* 10.0.0.1:1\n* 10.0.0.1:2\n"), "m.map:2:1: duplicate pattern \"*\" (first on line 1)");
  EXPECT_EQ(error_of("@x.org 10.0.0.1:1\n@X.org 10.0.0.1:2\n"), "m.map:2:1: duplicate pattern \"@X.org\" (first on line 1)");
  EXPECT_EQ(error_of("a 10.0.0.1:1 user=\n"), "m.map:1:14: user= needs a name");
  EXPECT_EQ(error_of("a 10.0.0.1:1\r\nb 10.0.0.1:x\r\n"), "m.map:2:12: bad port \"x\" (1 to 65535)");
  EXPECT_EQ(error_of(std::string("a 10.0.0.1:1\nb\x01 10.0.0.1:1\n")), "m.map:2:2: a control character");
  EXPECT_EQ(error_of("a " + std::string(9000, 'x') + "\n"), "m.map:1:8193: a line longer than 8192 bytes");
}

TEST(RouteMap, GlobsMatchAnyRunWithoutBlowingUp) {
  EXPECT_TRUE(glob_matches("*", ""));
  EXPECT_TRUE(glob_matches("a*b*c", "axxbyyc"));
  EXPECT_FALSE(glob_matches("a*b*c", "axxbyy"));
  EXPECT_TRUE(glob_matches("*@*.example.net", "u@a.b.example.net"));
  EXPECT_FALSE(glob_matches("*@*.example.net", "u@example.net"));
  // Many stars against a long near-miss: the one-backtrack matcher stays linear-ish.
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(glob_matches(std::string(50, '*') + "b", std::string(8000, 'a')));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

TEST(RouteMap, MangledMapsLoadOrFailCleanly) {
  // Random bytes flipped, cut and doubled in the example: either a map or an
  // InputError with a position, never anything else (the sanitizers watch).
  std::uint32_t seed = 12345;
  auto next = [&seed] { return seed = seed * 1664525u + 1013904223u; };
  for (int round = 0; round < 3000; ++round) {
    std::string text(kExample);
    for (int edits = 1 + next() % 4; edits > 0; --edits) {
      const auto at = next() % text.size();
      switch (next() % 3) {
        case 0: text[at] = static_cast<char>(next() % 256); break;
        case 1: text.erase(at, next() % 8); break;
        default: text.insert(at, text.substr(at, next() % 16)); break;
      }
      if (text.empty()) text = "x";
    }
    try {
      const auto map = RouteMap::parse(text, "f.map", BackendTls::None);
      (void)map.lookup("alice@example.com");
      (void)map.backends();
    } catch (const util::InputError& error) {
      EXPECT_EQ(std::string(error.what()).rfind("f.map:", 0), 0u) << error.what();
    }
  }
}

TEST(RouteMap, AMillionLinesLoad) {
  std::string text;
  text.reserve(40u << 20);
  for (int i = 0; i < 1'000'000; ++i) {
    text += "user" + std::to_string(i) + "@example.com 10.0." + std::to_string(i % 200) + ".1:143\n";
  }
  text += "* 10.1.0.1:143\n";
  const auto started = std::chrono::steady_clock::now();
  const auto map = RouteMap::parse(text, "big.map", BackendTls::None);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(60));  // sanitizers included
  EXPECT_EQ(map.entries(), 1'000'001u);
  EXPECT_EQ(map.lookup("USER999999@example.com").route.backend.host, "10.0.199.1");
  EXPECT_EQ(map.lookup("user1000000@example.com").route.backend.host, "10.1.0.1");
  EXPECT_EQ(map.backends().size(), 201u);
}

}  // namespace
}  // namespace imapscope::route
