#include "proxy/route/sasl.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proxy/route/command_tokens.hpp"
#include "proxy/util/base64.hpp"

namespace imapscope::route {
namespace {

using namespace std::string_literals;

// The first argument of "x " + text as the pre-login server reads it.
std::optional<std::string> astring_of(const std::string& text) {
  const std::string bytes = "x " + text + "\r\n";
  const auto parsed = tokenize_command(bytes, 4);
  if (parsed.malformed || parsed.tokens.size() != 2) return std::nullopt;
  return astring_value(parsed.tokens[1]);
}

DecodedCredentials sasl(Mechanism mechanism, std::vector<std::string> responses) {
  return sasl_credentials(mechanism, responses);
}

TEST(Sasl, MechanismNamesAndMethods) {
  EXPECT_EQ(mechanism_from_name("plain"), Mechanism::Plain);
  EXPECT_EQ(mechanism_from_name("LOGIN"), Mechanism::Login);
  EXPECT_EQ(mechanism_from_name("XOauth2"), Mechanism::XOAuth2);
  EXPECT_EQ(mechanism_from_name("OAUTHBEARER"), Mechanism::OAuthBearer);
  EXPECT_EQ(mechanism_from_name("CRAM-MD5"), std::nullopt);
  EXPECT_EQ(mechanism_from_name(""), std::nullopt);
  EXPECT_EQ(mechanism_name(Mechanism::XOAuth2), "XOAUTH2");
  EXPECT_EQ(auth_method(Mechanism::Plain), "plain");
  EXPECT_EQ(auth_method(Mechanism::Login), "login");
  EXPECT_EQ(auth_method(Mechanism::XOAuth2), "xoauth2");
  EXPECT_EQ(auth_method(Mechanism::OAuthBearer), "oauthbearer");
  EXPECT_EQ(responses_needed(Mechanism::Login), 2u);
  EXPECT_EQ(responses_needed(Mechanism::Plain), 1u);
}

TEST(Sasl, AstringValues) {
  EXPECT_EQ(astring_of("alice@example.com"), "alice@example.com");
  EXPECT_EQ(astring_of("user]x"), "user]x");  // resp-specials are ASTRING-CHARs
  EXPECT_EQ(astring_of(R"("a b")"), "a b");
  EXPECT_EQ(astring_of(R"("say \"hi\" \\o/")"), R"(say "hi" \o/)");
  EXPECT_EQ(astring_of(R"("")"), "");
  EXPECT_EQ(astring_of("{5}\r\na\"b\\c"), "a\"b\\c");
  EXPECT_EQ(astring_of("{5+}\r\nhello"), "hello");
  EXPECT_EQ(astring_of("{0}\r\n"), "");
  // Not astrings.
  EXPECT_EQ(astring_of(R"("bad \n escape")"), std::nullopt);
  EXPECT_EQ(astring_of(R"("trailing\")"), std::nullopt);
  EXPECT_EQ(astring_of("a%b"), std::nullopt);
  EXPECT_EQ(astring_of("a*b"), std::nullopt);
  EXPECT_EQ(astring_of("~{3}\r\nabc"), std::nullopt);  // literal8
  EXPECT_EQ(astring_of("{3}\r\na\0b"s), std::nullopt);
  EXPECT_EQ(astring_of("(a)"), std::nullopt);
}

TEST(Sasl, PlainWithAndWithoutAuthzid) {
  auto d = plain_credentials("\0alice\0s3cret"s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.method, "plain");
  EXPECT_EQ(d.credentials.user, "alice");
  EXPECT_EQ(d.credentials.authzid, "");
  EXPECT_EQ(d.credentials.secret, "s3cret");

  d = plain_credentials("bob\0admin\0pw"s);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.user, "admin");
  EXPECT_EQ(d.credentials.authzid, "bob");
  EXPECT_EQ(d.credentials.secret, "pw");

  d = plain_credentials("\0alice\0"s);  // an empty password is the backend's to refuse
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.secret, "");
}

TEST(Sasl, PlainMalformed) {
  for (const auto& message : {"alice"s, "\0alice"s, "\0\0pw"s, "\0alice\0pw\0more"s, "\0al\rice\0pw"s,
                              "\0al\nice\0pw"s, ""s}) {
    EXPECT_EQ(plain_credentials(message).error, CredentialsError::Malformed);
  }
}

TEST(Sasl, LoginMechanism) {
  const auto d = sasl(Mechanism::Login, {util::base64_encode("carol"), util::base64_encode("pa ss")});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.method, "login");
  EXPECT_EQ(d.credentials.user, "carol");
  EXPECT_EQ(d.credentials.secret, "pa ss");
  EXPECT_EQ(login_mechanism_credentials("", "pw").error, CredentialsError::Malformed);
  EXPECT_EQ(login_mechanism_credentials("a\0b"s, "pw").error, CredentialsError::Malformed);
  EXPECT_EQ(sasl(Mechanism::Login, {util::base64_encode("carol")}).error, CredentialsError::Malformed);
}

TEST(Sasl, XOAuth2) {
  const auto d = xoauth2_credentials("user=dave@example.com\x01" "auth=Bearer ya29.token\x01\x01");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.method, "xoauth2");
  EXPECT_EQ(d.credentials.user, "dave@example.com");
  EXPECT_EQ(d.credentials.secret, "ya29.token");
  for (const char* bad : {
           "user=dave\x01" "auth=Bearer t\x01",          // no final ^A
           "user=dave\x01" "auth=Bearer t",              // no ^A at all
           "user=dave\x01\x01",                          // no auth
           "auth=Bearer t\x01\x01",                      // no user
           "user=\x01" "auth=Bearer t\x01\x01",          // empty user
           "user=dave\x01" "auth=Basic t\x01\x01",       // not a bearer token
           "user=dave\x01" "auth=Bearer \x01\x01",       // empty token
           "user=dave\x01" "user=eve\x01" "auth=Bearer t\x01\x01",  // two users
           "user=dave\x01" "=x\x01" "auth=Bearer t\x01\x01",        // empty key
           "user=da\x02ve\x01" "auth=Bearer t\x01\x01",             // control in a value
           "\x01",
       }) {
    EXPECT_EQ(xoauth2_credentials(bad).error, CredentialsError::Malformed) << bad;
  }
}

TEST(Sasl, OAuthBearer) {
  auto d = oauthbearer_credentials(
      "n,a=user@example.com,\x01" "host=server.example.com\x01" "port=143\x01" "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.method, "oauthbearer");
  EXPECT_EQ(d.credentials.user, "user@example.com");
  EXPECT_EQ(d.credentials.secret, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");

  d = oauthbearer_credentials("y,a=a=3Db=2Cc,\x01" "auth=bearer tok\x01\x01");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.user, "a=b,c");
  EXPECT_EQ(d.credentials.secret, "tok");

  d = oauthbearer_credentials("n,,\x01" "auth=Bearer tok\x01\x01");  // the token names the user
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.user, "");

  for (const char* bad : {
           "p=tls-unique,a=u,\x01" "auth=Bearer t\x01\x01",  // channel binding
           "n,a=u\x01" "auth=Bearer t\x01\x01",              // header without its last ","
           "n,a=u=2X,\x01" "auth=Bearer t\x01\x01",          // bad escape
           "n,a=,\x01" "auth=Bearer t\x01\x01",              // empty saslname
           "n,b=u,\x01" "auth=Bearer t\x01\x01",
           "n,a=u,\x01" "host=h\x01\x01",                    // no auth
           "n,a=u,\x01" "auth=Bearer t\x01",                 // no final ^A
           "n,a=u,",
           "\x01",                                           // the answer to an error challenge
           "",
       }) {
    EXPECT_EQ(oauthbearer_credentials(bad).error, CredentialsError::Malformed) << bad;
  }
}

TEST(Sasl, Base64IsCheckedStrictly) {
  const std::string good = util::base64_encode("\0alice\0pw"s);
  ASSERT_TRUE(sasl(Mechanism::Plain, {good}).ok());
  for (const auto& bad : {good + "=", good.substr(1), " " + good, good + "\r", "AGFsaWNlAHB3"s + "!", "Zh=="s}) {
    EXPECT_EQ(sasl(Mechanism::Plain, {bad}).error, CredentialsError::NotBase64) << bad;
  }
  EXPECT_EQ(sasl(Mechanism::Plain, {""}).error, CredentialsError::Malformed);  // empty response
  EXPECT_EQ(sasl(Mechanism::Plain, {}).error, CredentialsError::Malformed);
  EXPECT_EQ(sasl(Mechanism::Plain, {good, good}).error, CredentialsError::Malformed);
}

TEST(Sasl, LoginCommandCredentials) {
  const std::string bytes = "a LOGIN \"al ice\" {3}\r\np\"w\r\n";
  const auto parsed = tokenize_command(bytes, 4);
  ASSERT_EQ(parsed.tokens.size(), 4u);
  const auto d = login_command_credentials(parsed.tokens[2], parsed.tokens[3]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.credentials.method, "plain");
  EXPECT_EQ(d.credentials.user, "al ice");
  EXPECT_EQ(d.credentials.secret, "p\"w");
  const std::string empty_user = "a LOGIN \"\" pw\r\n";
  const auto e = tokenize_command(empty_user, 4);
  EXPECT_EQ(login_command_credentials(e.tokens[2], e.tokens[3]).error, CredentialsError::Malformed);
  const std::string crlf_user = "a LOGIN {3}\r\na\r\n pw\r\n";
  const auto c = tokenize_command(crlf_user, 4);
  ASSERT_EQ(c.tokens.size(), 4u);
  EXPECT_EQ(login_command_credentials(c.tokens[2], c.tokens[3]).error, CredentialsError::Malformed);
}

}  // namespace
}  // namespace imapscope::route
