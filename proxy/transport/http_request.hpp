// The admin address's requests, read strictly (RFC 9112): what one parser lets by
// and another reads differently (two Content-Lengths, folded or padded header
// names, a bare LF) is how requests get smuggled past a reverse proxy, so anything
// outside the grammar is refused (400) rather than guessed at. Pure functions of
// bytes: no sockets here.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace imapscope::transport {

struct HttpRequest {
  std::string method;   // "GET" (HEAD is answered as GET without the body)
  std::string version;  // "HTTP/1.1" or "HTTP/1.0"
  std::string path;     // "/api/sessions" (decoded, no query)
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names in lower case; repeats joined with ", "
  std::size_t content_length = 0;
  std::string body;
  std::string header(const std::string& lower_name) const;
};

// Where a request head ends in `data` (the offset just past its empty line), or
// what is wrong with it as far as it came.
struct HeadScan {
  enum class State { NeedMore, Complete, Malformed } state = State::NeedMore;
  std::size_t end = 0;  // Complete: the head's length, final CRLF CRLF included
  std::string error;    // Malformed: why
};
HeadScan scan_http_head(std::string_view data);

// tchar (RFC 9110, 5.6.2): the characters of methods and field names (requests and
// the lookup service's answers alike).
bool is_http_token_char(char c);

// A head parsed, or the status and reason to refuse it with (400 for anything outside
// the grammar; 501 for Transfer-Encoding; 505 for an HTTP version other than 1.x).
struct ParsedHead {
  std::optional<HttpRequest> request;
  int status = 400;
  std::string error;
};
// `head` is the request line and header lines, each ending in CRLF, without the
// final empty line.
ParsedHead parse_http_head(std::string_view head);

std::string percent_decode(std::string_view text);

}  // namespace imapscope::transport
