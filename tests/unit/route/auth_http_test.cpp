// nginx's auth_http: the request bytes nginx would send for the same logins, and its
// answers read as nginx reads them (plus Dovecot-style JSON), garbage refused.
#include "proxy/route/auth_http.hpp"

#include <gtest/gtest.h>

namespace imapscope::route {
namespace {

LoginRequest login(std::string user, std::string secret) {
  LoginRequest request;
  request.user = std::move(user);
  request.secret = std::move(secret);
  request.method = "plain";
  request.client_ip = "192.0.2.7";
  return request;
}

HttpAnswer answer(std::vector<std::pair<std::string, std::string>> headers, int status = 200, std::string body = "") {
  HttpAnswer out;
  out.status = status;
  out.headers = std::move(headers);
  out.body = std::move(body);
  return out;
}

TEST(AuthHttpRequest, APlainLoginIsWhatNginxSends) {
  const AuthHttpTarget target{"127.0.0.1", "/auth"};
  EXPECT_EQ(auth_http_request(target, login("alice@example.com", "secret")),
            "GET /auth HTTP/1.0\r\n"
            "Host: 127.0.0.1\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: alice@example.com\r\n"
            "Auth-Pass: secret\r\n"
            "Auth-Protocol: imap\r\n"
            "Auth-Login-Attempt: 1\r\n"
            "Client-IP: 192.0.2.7\r\n"
            "\r\n");  // no Client-Host: nginx sends it for SMTP only
}

TEST(AuthHttpRequest, ByteForByteWhatNginxSentForTheSameLogin) {
  // Captured from Debian's nginx 1.22 (libnginx-mod-mail), auth_http
  // 127.0.0.1:PORT/auth, the client sending LOGIN with two literals.
  auto request = login("b\xc3\xb6" "b smith", "pass word 100%+\xc3\xa4");
  request.client_ip = "127.0.0.1";
  EXPECT_EQ(auth_http_request({"127.0.0.1", "/auth"}, request),
            "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: plain\r\nAuth-User: b\xc3\xb6" "b%20smith\r\n"
            "Auth-Pass: pass%20word%20100%25+\xc3\xa4\r\nAuth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\n"
            "Client-IP: 127.0.0.1\r\n\r\n");
}

TEST(AuthHttpRequest, OnlyControlsSpaceAndPercentAreEscaped) {
  // nginx's NGX_ESCAPE_MAIL_AUTH: %00-%1F, " " and "%"; "+", 0x7F and UTF-8 as they are.
  EXPECT_EQ(auth_http_escape("a b%c+d"), "a%20b%25c+d");
  EXPECT_EQ(auth_http_escape("p\xc3\xa4ss\x7f"), "p\xc3\xa4ss\x7f");
  EXPECT_EQ(auth_http_escape(std::string("x\r\n\t\0y", 6)), "x%0D%0A%09%00y");
  auto request = login("b\xc3\xb6" "b smith", "pass word 100%+");
  request.method = "login";  // AUTHENTICATE LOGIN: "plain" to nginx too
  request.attempt = 3;
  request.client_tls = true;
  request.tls_protocol = "TLSv1.2";
  request.tls_cipher = "ECDHE-RSA-AES256-GCM-SHA384";
  request.proxy_protocol_ip = "198.51.100.1";
  request.proxy_protocol_port = 40000;
  request.proxy_protocol_server_ip = "203.0.113.5";
  request.proxy_protocol_server_port = 993;
  EXPECT_EQ(auth_http_request({"auth.example", "/"}, request),
            "GET / HTTP/1.0\r\n"
            "Host: auth.example\r\n"
            "Auth-Method: plain\r\n"
            "Auth-User: b\xc3\xb6" "b%20smith\r\n"
            "Auth-Pass: pass%20word%20100%25+\r\n"
            "Auth-Protocol: imap\r\n"
            "Auth-Login-Attempt: 3\r\n"
            "Client-IP: 192.0.2.7\r\n"
            "Proxy-Protocol-Addr: 198.51.100.1\r\n"
            "Proxy-Protocol-Port: 40000\r\n"
            "Proxy-Protocol-Server-Addr: 203.0.113.5\r\n"
            "Proxy-Protocol-Server-Port: 993\r\n"
            "Auth-SSL: on\r\n"
            "Auth-SSL-Protocol: TLSv1.2\r\n"
            "Auth-SSL-Cipher: ECDHE-RSA-AES256-GCM-SHA384\r\n"
            "\r\n");
}

TEST(AuthHttpRequest, TokenMechanismsGoByTheirNameAndNothingBreaksTheLines) {
  auto request = login("u", "tok");
  request.method = "XOAUTH2";
  request.client_ip = "192.0.2.1\r\nAuth-Pass: x";
  const auto bytes = auth_http_request({"h", "/a"}, request);
  EXPECT_NE(bytes.find("Auth-Method: xoauth2\r\n"), std::string::npos);
  EXPECT_NE(bytes.find("Client-IP: 192.0.2.1Auth-Pass: x\r\n"), std::string::npos);
}

TEST(AuthHttpAnswer, OkRoutesToAuthServerAndPort) {
  const auto verdict = parse_auth_http_answer(
      answer({{"Auth-Status", "OK"}, {"Auth-Server", "10.0.0.5"}, {"Auth-Port", "1143"}, {"Auth-Wait", "3"}}),
      BackendTls::Starttls);
  EXPECT_FALSE(verdict.ask_again);
  ASSERT_EQ(verdict.result.status, LookupStatus::Routed);
  EXPECT_EQ(verdict.result.route.backend, (Backend{"10.0.0.5", 1143, BackendTls::Starttls}));
  EXPECT_FALSE(verdict.result.route.login_user);
  EXPECT_FALSE(verdict.result.route.login_password);
  EXPECT_EQ(verdict.result.wait.count(), 0);  // nginx ignores Auth-Wait with OK
}

TEST(AuthHttpAnswer, AuthUserAndPassOverrideTheCredentials) {
  const auto verdict = parse_auth_http_answer(
      answer({{"auth-status", "OK"}, {"AUTH-SERVER", "::1"}, {"Auth-Port", "143"}, {"Auth-User", "alice%20x"},
              {"Auth-Pass", "backend-pw"}}),
      BackendTls::None);
  ASSERT_EQ(verdict.result.status, LookupStatus::Routed);
  EXPECT_EQ(verdict.result.route.backend.name(), "[::1]:143");
  EXPECT_EQ(verdict.result.route.login_user, "alice%20x");  // as sent, as nginx
  EXPECT_EQ(verdict.result.route.login_password, "backend-pw");
}

TEST(AuthHttpAnswer, AnErrorTextIsTheClientsNoAfterAuthWait) {
  const auto verdict = parse_auth_http_answer(
      answer({{"Auth-Status", "Invalid login or password"}, {"Auth-Wait", "3"}, {"Auth-Error-Code", "535 5.7.8"}}),
      BackendTls::None);
  EXPECT_EQ(verdict.result.status, LookupStatus::Refused);
  EXPECT_EQ(verdict.result.message, "Invalid login or password");
  EXPECT_EQ(verdict.result.wait.count(), 3);
  EXPECT_EQ(parse_auth_http_answer(answer({{"Auth-Status", "No"}, {"Auth-Wait", "x1"}}), BackendTls::None).result.wait.count(), 0);
  EXPECT_EQ(parse_auth_http_answer(answer({{"Auth-Status", "No"}, {"Auth-Wait", "99999999999"}}), BackendTls::None).result.wait,
            kMaxAuthWait);
}

TEST(AuthHttpAnswer, WaitAsksAgainAfterAuthWait) {
  const auto verdict = parse_auth_http_answer(answer({{"Auth-Status", "WAIT"}, {"Auth-Wait", "2"}}), BackendTls::None);
  EXPECT_TRUE(verdict.ask_again);
  EXPECT_EQ(verdict.result.wait.count(), 2);
  EXPECT_NE(verdict.result.status, LookupStatus::Routed);
}

TEST(AuthHttpAnswer, WhatNginxRefusesIsUnavailable) {
  auto status_of = [](std::vector<std::pair<std::string, std::string>> headers) {
    return parse_auth_http_answer(answer(std::move(headers)), BackendTls::None).result;
  };
  const auto name = status_of({{"Auth-Status", "OK"}, {"Auth-Server", "imap.example.com"}, {"Auth-Port", "143"}});
  EXPECT_EQ(name.status, LookupStatus::Unavailable);
  EXPECT_NE(name.message.find("not an IP address"), std::string::npos);
  EXPECT_EQ(status_of({{"Auth-Status", "OK"}, {"Auth-Server", "10.0.0.1"}}).status, LookupStatus::Unavailable);
  EXPECT_EQ(status_of({{"Auth-Status", "OK"}, {"Auth-Server", "10.0.0.1"}, {"Auth-Port", "0"}}).status, LookupStatus::Unavailable);
  EXPECT_EQ(status_of({{"Auth-Status", "OK"}, {"Auth-Server", "10.0.0.1"}, {"Auth-Port", "65536"}}).status,
            LookupStatus::Unavailable);
  EXPECT_EQ(status_of({{"Auth-Status", "OK"}, {"Auth-Server", "[::1]"}, {"Auth-Port", "143"}}).status, LookupStatus::Unavailable);
  // No Auth-Status at all still routes, as nginx does.
  EXPECT_EQ(status_of({{"Auth-Server", "10.0.0.1"}, {"Auth-Port", "143"}}).status, LookupStatus::Routed);
  // A 500 page: no route, and the reason says what came.
  const auto page = parse_auth_http_answer(answer({{"Content-Type", "text/html"}}, 500, "<h1>oops</h1>"), BackendTls::None).result;
  EXPECT_EQ(page.status, LookupStatus::Unavailable);
  EXPECT_NE(page.message.find("500"), std::string::npos);
}

TEST(AuthHttpAnswer, TheSecretNeverReachesTheReason) {
  const auto verdict = parse_auth_http_answer(
      answer({{"Auth-Status", "OK"}, {"Auth-Server", "nope"}, {"Auth-Port", "143"}, {"Auth-Pass", "s3cr3t"}}),
      BackendTls::None);
  EXPECT_EQ(verdict.result.message.find("s3cr3t"), std::string::npos);
}

TEST(AuthHttpAnswer, DovecotStyleJson) {
  auto json = [](std::string body, int status = 200) {
    return parse_auth_http_answer(answer({{"Content-Type", "application/json; charset=utf-8"}}, status, std::move(body)),
                                  BackendTls::None)
        .result;
  };
  const auto plain = json(R"({"host":"imap1.example.com","port":1143,"proxy":"y","proxy_timeout":5})");
  ASSERT_EQ(plain.status, LookupStatus::Routed);
  EXPECT_EQ(plain.route.backend, (Backend{"imap1.example.com", 1143, BackendTls::None}));
  const auto tls = json(R"({"host":"10.0.0.1","ssl":"yes"})");
  EXPECT_EQ(tls.route.backend, (Backend{"10.0.0.1", 993, BackendTls::Implicit}));
  const auto starttls = json(R"({"host":"10.0.0.1","port":"143","ssl":true,"starttls":"yes","destuser":"a.b","pass":"pw","master":"yes"})");
  EXPECT_EQ(starttls.route.backend, (Backend{"10.0.0.1", 143, BackendTls::Starttls}));
  EXPECT_EQ(starttls.route.login_user, "a.b");
  EXPECT_EQ(starttls.route.login_password, "pw");
  EXPECT_TRUE(starttls.route.master);
  const auto refused = json(R"({"nologin":"","reason":"Moved to imap2"})");
  EXPECT_EQ(refused.status, LookupStatus::Refused);
  EXPECT_EQ(refused.message, "Moved to imap2");
  EXPECT_EQ(json(R"({"nologin":true})").message, "Login disabled.");
  EXPECT_EQ(json(R"({"host":"10.0.0.1","port":0})").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"({"host":"10.0.0.1","master":"admin"})").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"({"port":143})").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"({"host":5})").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"([1,2])").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"({"host":)").status, LookupStatus::Unavailable);
  EXPECT_EQ(json(R"({"host":"10.0.0.1"})", 403).status, LookupStatus::Unavailable);
}

TEST(AuthHttpAnswer, RefusalTextStaysOneLine) {
  const auto verdict = parse_auth_http_answer(answer({{"Auth-Status", "bad\ttext"}}), BackendTls::None);
  EXPECT_EQ(verdict.result.message, "bad text");
  EXPECT_EQ(parse_auth_http_answer(answer({{"Auth-Status", ""}}), BackendTls::None).result.message, "Authentication failed.");
}

}  // namespace
}  // namespace imapscope::route
