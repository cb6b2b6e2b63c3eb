// The admin address's request parser against RFC 9112: good requests read as sent,
// and everything a lenient parser would guess at refused (the smuggling cases:
// two lengths, folded or padded header names, bare LF or CR, control characters).
#include <gtest/gtest.h>

#include <string>

#include "proxy/transport/http_request.hpp"

namespace imapscope::transport {
namespace {

using namespace std::string_literals;

// The head as the server hands it to the parser: up to its empty line, which is left out.
ParsedHead parse(const std::string& head) {
  const auto scan = scan_http_head(head);
  EXPECT_EQ(scan.state, HeadScan::State::Complete) << scan.error;
  return parse_http_head(std::string_view(head).substr(0, scan.end - 2));
}

void expect_refused(const std::string& head, int status, const std::string& why) {
  const auto parsed = parse(head);
  EXPECT_FALSE(parsed.request) << head;
  EXPECT_EQ(parsed.status, status) << head;
  EXPECT_NE(parsed.error.find(why), std::string::npos) << parsed.error;
}

TEST(HttpRequest, ReadsAGetWithQueryAndHeaders) {
  const auto parsed = parse(
      "GET /api/sessions/12/events?after=7&stream=1&q=a%20b+c HTTP/1.1\r\n"
      "Host: 127.0.0.1:9143\r\nAccept:text/event-stream\r\nX-Empty:\r\nCookie: a=1\r\ncookie: b=2\r\n"
      "User-Agent: \tcurl/7.88 (x86_64)  \r\n\r\n");
  ASSERT_TRUE(parsed.request) << parsed.error;
  const auto& r = *parsed.request;
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.path, "/api/sessions/12/events");
  EXPECT_EQ(r.query.at("after"), "7");
  EXPECT_EQ(r.query.at("stream"), "1");
  EXPECT_EQ(r.query.at("q"), "a b c");
  EXPECT_EQ(r.header("host"), "127.0.0.1:9143");
  EXPECT_EQ(r.header("accept"), "text/event-stream");
  EXPECT_EQ(r.header("x-empty"), "");
  EXPECT_EQ(r.header("cookie"), "a=1; b=2");
  EXPECT_EQ(r.header("user-agent"), "curl/7.88 (x86_64)");
  EXPECT_EQ(r.content_length, 0u);
}

TEST(HttpRequest, ReadsAPostWithLengthAndAnHttp10ProbeWithoutHost) {
  auto parsed = parse("POST /api/captures HTTP/1.1\r\nHost: localhost:9143\r\nContent-Type: application/json\r\n"
                      "Content-Length: 17\r\n\r\n{\"user\": \"bob\"}");
  ASSERT_TRUE(parsed.request) << parsed.error;
  EXPECT_EQ(parsed.request->content_length, 17u);
  parsed = parse("GET /readyz HTTP/1.0\r\n\r\n");  // HAProxy's httpchk
  ASSERT_TRUE(parsed.request) << parsed.error;
  EXPECT_EQ(parsed.request->version, "HTTP/1.0");
  parsed = parse("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(parsed.request) << parsed.error;
  EXPECT_EQ(parsed.request->method, "HEAD");
}

TEST(HttpRequest, ScanFindsTheEndOrWaits) {
  EXPECT_EQ(scan_http_head("GET / HTTP/1.1\r\nHost: x\r\n").state, HeadScan::State::NeedMore);
  EXPECT_EQ(scan_http_head("GET / HTTP/1.1\r\nHost: x\r\n\r").state, HeadScan::State::NeedMore);
  const auto done = scan_http_head("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\n\rmay be anything");
  EXPECT_EQ(done.state, HeadScan::State::Complete);
  EXPECT_EQ(done.end, 27u);
}

TEST(HttpRequest, BareLineFeedOrCarriageReturnRefused) {
  auto scan = scan_http_head("GET / HTTP/1.1\nHost: x\n\n");
  EXPECT_EQ(scan.state, HeadScan::State::Malformed);
  EXPECT_NE(scan.error.find("bare LF"), std::string::npos);
  scan = scan_http_head("GET / HTTP/1.1\r\nHost: x\n\r\n");
  EXPECT_EQ(scan.state, HeadScan::State::Malformed);
  scan = scan_http_head("GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n");
  EXPECT_EQ(scan.state, HeadScan::State::Malformed);
  EXPECT_NE(scan.error.find("CR not followed by LF"), std::string::npos);
}

TEST(HttpRequest, ContentLengthMustBeOneNumber) {
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400,
                 "more than one Content-Length");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", 400, "not a number");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, "not a number");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400, "not a number");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400, "empty Content-Length");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, "out of range");
}

TEST(HttpRequest, TransferEncodingNotSupported) {
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "Transfer-Encoding");
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400,
                 "both Transfer-Encoding and Content-Length");
}

TEST(HttpRequest, HeaderLinesFollowTheGrammar) {
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n  folded\r\n\r\n", 400, "obs-fold");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tfolded\r\n\r\n", 400, "obs-fold");
  expect_refused("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "whitespace between a header name and its colon");
  expect_refused("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400, "whitespace between a header name and its colon");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n", 400, "not a token");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400, "without a name and a colon");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 400, "without a name and a colon");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\r\n\r\n", 400, "control character");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\0c\r\n\r\n"s, 400, "control character");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x7f\r\n\r\n", 400, "control character");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX\x01A: b\r\n\r\n", 400, "not a token");
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "more than one Host");
  expect_refused("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "no Host");
}

TEST(HttpRequest, RequestLineFollowsTheGrammar) {
  expect_refused("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "METHOD SP TARGET SP VERSION");
  expect_refused("GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "METHOD SP TARGET SP VERSION");
  expect_refused("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "METHOD SP TARGET SP VERSION");
  expect_refused("GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "METHOD SP TARGET SP VERSION");
  expect_refused("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "not a token");
  expect_refused("GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400, "HTTP/x.y");
  expect_refused("GET / http/1.1\r\nHost: x\r\n\r\n", 400, "HTTP/x.y");
  expect_refused("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/1.1");
  for (const char* target : {"*", "http://evil.example/", "api", "/a#frag", "/a%zz", "/a%4", "/a\"b", "/a<b>",
                             "/a\\b", "/a{b}", "/\x80", "/a|b", "/a^b", "/a`b"}) {
    expect_refused("GET "s + target + " HTTP/1.1\r\nHost: x\r\n\r\n", 400, "request target");
  }
  EXPECT_TRUE(parse("GET /a-b._~!$&'()*+,;=:@/%41?x=/?y HTTP/1.1\r\nHost: x\r\n\r\n").request);
}

}  // namespace
}  // namespace imapscope::transport
