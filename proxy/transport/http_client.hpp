// One HTTP/1.0 exchange with a lookup service: connect, send the request, read the
// answer until the server closes or its Content-Length is complete. The whole of it
// (name resolution, connect, write, read) is bounded by one deadline, the answer by a
// size; every failure comes back as a value (HttpClientResult::error), never as an
// exception, and the socket is closed on return whatever happened.
//
// The answer's head is read strictly, as the admin server reads requests
// (http_request.cpp): no obs-fold, no blank before a colon, no control characters, one
// Content-Length, no Transfer-Encoding (HTTP/1.0 has none), at most kMaxAnswerHeaders
// header lines. A bare LF ends a line as CRLF does (RFC 9112, 2.2; nginx's own auth_http
// reader takes both, so services written for it may send either).
//
// An answer without Content-Length ends when the server closes. A server that sends its
// head and then keeps the connection open (nginx reads the head only, so such services
// work with nginx) gets its answer taken as it stands when the deadline comes: slow, but
// not a failure.
//
// A host name goes through the system resolver, whose getaddrinfo the deadline can't
// interrupt (a hung DNS server holds the exchange until it gives up): routing.http is
// best written with an IP address, as nginx's auth_http resolves it once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include "proxy/route/auth_http.hpp"

namespace imapscope::transport {

inline constexpr std::size_t kMaxAnswerHeaders = 100;

enum class HttpClientError : std::uint8_t {
  None,
  Timeout,    // the deadline came first (connect, write or read)
  Connect,    // no address could be connected to (refused, unreachable, unresolvable)
  Io,         // the connection broke, or closed before any answer
  Malformed,  // the answer is not HTTP/1.x as read here
  TooLarge,   // the answer is longer than allowed
};
std::string_view to_string(HttpClientError error);

struct HttpClientResult {
  HttpClientError error = HttpClientError::None;
  std::string detail;         // why it failed, for the log
  route::HttpAnswer answer;   // when error == None
  bool cut_by_deadline = false;  // None: the body ended at the deadline, not at a close
};

asio::awaitable<HttpClientResult> http_exchange(asio::any_io_executor executor, std::string host, std::uint16_t port,
                                                std::string request, std::chrono::milliseconds deadline,
                                                std::size_t max_answer_bytes);

// Where an answer's head ends in data (just past its empty line), nullopt while it
// hasn't come whole.
std::optional<std::size_t> answer_head_end(std::string_view data);
// Parses a head (status line and header lines, without the empty line). The answer's
// status and headers, or nullopt and why.
std::optional<route::HttpAnswer> parse_answer_head(std::string_view head, std::string& error);

// "http://host[:port][/path[?query]]" (host: a name, an IPv4 address or [v6]). https
// is refused: the lookup service is expected on loopback or a trusted network.
struct HttpUrl {
  std::string host;  // without brackets
  std::uint16_t port = 80;
  std::string path = "/";
  std::string host_header() const;  // nginx's Host: the host as written, without the port
};
std::optional<HttpUrl> parse_http_url(std::string_view url, std::string& error);

}  // namespace imapscope::transport
