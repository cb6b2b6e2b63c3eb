#include "proxy/transport/http_client.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/transport/http_request.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "proxy/transport/no_throw.hpp"
#include "proxy/transport/upstream_resolver.hpp"
#include "proxy/util/cidr.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr std::size_t kMaxHead = 64 * 1024;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// field-value characters (RFC 9110, 5.5): visible ASCII, obs-text, SP and HTAB.
bool is_field_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || u == '\t' || (u >= 0x21 && u != 0x7f);
}

// The next line of head from pos (CRLF or a bare LF ends it); advances pos.
std::string_view next_line(std::string_view head, std::size_t& pos) {
  const auto lf = head.find('\n', pos);
  const auto end = lf == std::string_view::npos ? head.size() : lf;
  auto line = head.substr(pos, end - pos);
  pos = lf == std::string_view::npos ? head.size() : lf + 1;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// How far an exchange got, shared between the exchange and the deadline.
struct Progress {
  std::string phase = "connecting";
  std::string buffer;
  std::optional<std::size_t> head_end;
  std::optional<std::size_t> content_length;
  route::HttpAnswer answer;  // status and headers once the head is parsed
};

void fail(HttpClientResult& result, HttpClientError error, std::string detail) {
  result.error = error;
  result.detail = std::move(detail);
}

// The head is complete: parse it and learn how the body ends. False on garbage.
bool take_head(Progress& progress, HttpClientResult& result) {
  std::string error;
  const auto head = std::string_view(progress.buffer).substr(0, *progress.head_end);
  auto parsed = parse_answer_head(head, error);
  if (!parsed) {
    fail(result, HttpClientError::Malformed, error);
    return false;
  }
  if (parsed->has_header("Transfer-Encoding")) {
    fail(result, HttpClientError::Malformed, "Transfer-Encoding in an answer to HTTP/1.0");
    return false;
  }
  std::size_t lengths = 0;
  for (const auto& [name, value] : parsed->headers) {
    if (!imap::iequals(name, "Content-Length")) continue;
    const auto length = util::parse_unsigned(value);
    if (++lengths > 1 || !length || *length > (std::uint64_t{1} << 40)) {
      fail(result, HttpClientError::Malformed, "a bad or repeated Content-Length");
      return false;
    }
    progress.content_length = static_cast<std::size_t>(*length);
  }
  progress.answer = std::move(*parsed);
  progress.phase = "reading the answer's body";
  return true;
}

asio::awaitable<void> exchange(asio::ip::tcp::socket& socket, const std::string& host, std::uint16_t port,
                               const std::string& request, std::size_t max_answer_bytes, Progress& progress,
                               HttpClientResult& result) {
  // A named Endpoint: GCC 12 destroys a braced temporary in a co_await expression twice.
  const Endpoint target{host, port};
  auto [rec, endpoints] = co_await resolve_upstream(target);
  if (rec) {
    fail(result, HttpClientError::Connect, "cannot resolve " + host + ": " + rec.message());
    co_return;
  }
  std::string errors;
  bool connected = false;
  for (const auto& endpoint : endpoints) {
    auto [cec] = co_await socket.async_connect(endpoint, kNoThrow);
    if (!cec) {
      connected = true;
      break;
    }
    if (cec == asio::error::operation_aborted) co_return;  // the deadline
    errors += (errors.empty() ? "" : "; ") + endpoint.address().to_string() + ": " + cec.message();
    asio::error_code ignored;
    socket.close(ignored);
  }
  if (!connected) {
    fail(result, HttpClientError::Connect, errors.empty() ? "no address for " + host : errors);
    co_return;
  }
  progress.phase = "sending the request";
  if (auto [wec, n] = co_await asio::async_write(socket, asio::buffer(request), kNoThrow); wec) {
    if (wec != asio::error::operation_aborted) fail(result, HttpClientError::Io, "sending the request: " + wec.message());
    co_return;
  }
  progress.phase = "waiting for the answer";
  char chunk[8192];
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(chunk), kNoThrow);
    if (ec == asio::error::operation_aborted) co_return;
    progress.buffer.append(chunk, n);
    if (progress.buffer.size() > max_answer_bytes) {
      fail(result, HttpClientError::TooLarge, "an answer over " + std::to_string(max_answer_bytes) + " bytes");
      co_return;
    }
    if (!progress.head_end) {
      progress.head_end = answer_head_end(progress.buffer);
      if (progress.head_end) {
        if (!take_head(progress, result)) co_return;
      } else if (progress.buffer.size() > kMaxHead) {
        fail(result, HttpClientError::TooLarge, "an answer head over " + std::to_string(kMaxHead) + " bytes");
        co_return;
      } else if (!progress.buffer.empty()) {
        progress.phase = "reading the answer's head";
      }
    }
    const auto body_bytes = progress.head_end ? progress.buffer.size() - *progress.head_end : 0;
    if (progress.head_end && progress.content_length && body_bytes >= *progress.content_length) {
      result.answer = std::move(progress.answer);
      result.answer.body = progress.buffer.substr(*progress.head_end, *progress.content_length);
      co_return;
    }
    if (ec == asio::error::eof) {
      if (!progress.head_end) {
        fail(result, progress.buffer.empty() ? HttpClientError::Io : HttpClientError::Malformed,
             progress.buffer.empty() ? "closed without an answer" : "closed inside the answer's head");
      } else if (progress.content_length) {
        fail(result, HttpClientError::Malformed, "closed before the Content-Length was complete");
      } else {
        result.answer = std::move(progress.answer);
        result.answer.body = progress.buffer.substr(*progress.head_end);
      }
      co_return;
    }
    if (ec) {
      fail(result, HttpClientError::Io, progress.phase + ": " + ec.message());
      co_return;
    }
  }
}

}  // namespace

std::string_view to_string(HttpClientError error) {
  switch (error) {
    case HttpClientError::None: return "none";
    case HttpClientError::Timeout: return "timeout";
    case HttpClientError::Connect: return "connect";
    case HttpClientError::Io: return "io";
    case HttpClientError::Malformed: return "malformed";
    case HttpClientError::TooLarge: return "too_large";
  }
  return "unknown";
}

std::optional<std::size_t> answer_head_end(std::string_view data) {
  std::size_t pos = 0;
  while (pos < data.size()) {
    const auto lf = data.find('\n', pos);
    if (lf == std::string_view::npos) return std::nullopt;
    const bool empty = lf == pos || (lf == pos + 1 && data[pos] == '\r');
    pos = lf + 1;
    if (empty) return pos;
  }
  return std::nullopt;
}

std::optional<route::HttpAnswer> parse_answer_head(std::string_view head, std::string& error) {
  std::size_t pos = 0;
  const auto status_line = next_line(head, pos);
  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112, 4); a
  // missing second SP is tolerated.
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || !is_digit(status_line[7]) ||
      status_line[8] != ' ' || !is_digit(status_line[9]) || !is_digit(status_line[10]) || !is_digit(status_line[11]) ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    error = "the answer does not start with an HTTP/1.x status line";
    return std::nullopt;
  }
  for (const char c : status_line) {
    if (!is_field_char(c)) {
      error = "a control character in the status line";
      return std::nullopt;
    }
  }
  route::HttpAnswer answer;
  answer.status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
  while (pos < head.size()) {
    const auto field = next_line(head, pos);
    if (field.empty()) break;  // the empty line, when the caller passed it
    if (answer.headers.size() >= kMaxAnswerHeaders) {
      error = "more than " + std::to_string(kMaxAnswerHeaders) + " header lines";
      return std::nullopt;
    }
    if (field[0] == ' ' || field[0] == '\t') {
      error = "a folded header line (obs-fold)";
      return std::nullopt;
    }
    const auto colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error = "a header line without a name and a colon";
      return std::nullopt;
    }
    for (const char c : field.substr(0, colon)) {
      if (!is_http_token_char(c)) {
        error = "a header name that is not a token";
        return std::nullopt;
      }
    }
    auto value = field.substr(colon + 1);
    for (const char c : value) {
      if (!is_field_char(c)) {
        error = "a control character in a header value";
        return std::nullopt;
      }
    }
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    answer.headers.emplace_back(std::string(field.substr(0, colon)), std::string(value));
  }
  return answer;
}

asio::awaitable<HttpClientResult> http_exchange(asio::any_io_executor executor, std::string host, std::uint16_t port,
                                                std::string request, std::chrono::milliseconds deadline,
                                                std::size_t max_answer_bytes) {
  HttpClientResult result;
  Progress progress;
  try {
    asio::ip::tcp::socket socket(executor);
    asio::steady_timer timer(executor, deadline);
    auto outcome = co_await (exchange(socket, host, port, request, max_answer_bytes, progress, result) ||
                             timer.async_wait(kNoThrow));
    if (outcome.index() == 1 && result.error == HttpClientError::None) {
      if (progress.head_end && !progress.content_length && result.answer.status == 0) {
        // The head came, the close didn't: the answer as it stands (see the header).
        result.answer = std::move(progress.answer);
        result.answer.body = progress.buffer.substr(*progress.head_end);
        result.cut_by_deadline = true;
      } else {
        fail(result, HttpClientError::Timeout,
             "no answer within " + std::to_string(deadline.count()) + " ms (" + progress.phase + ")");
      }
    }
  } catch (const std::exception& e) {
    fail(result, HttpClientError::Io, e.what());
  }
  if (result.error != HttpClientError::None) result.answer = {};
  co_return result;
}

std::string HttpUrl::host_header() const { return host.find(':') != std::string::npos ? "[" + host + "]" : host; }

std::optional<HttpUrl> parse_http_url(std::string_view url, std::string& error) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !imap::iequals(url.substr(0, kScheme.size()), kScheme)) {
    error = "only http:// URLs are supported";
    return std::nullopt;
  }
  auto rest = url.substr(kScheme.size());
  const auto slash = rest.find_first_of("/?#");
  auto authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  if (!path.empty() && path.front() != '/') {
    error = "the path must start with /";
    return std::nullopt;
  }
  if (path.find('#') != std::string_view::npos) path = path.substr(0, path.find('#'));
  for (const char c : path) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      error = "a blank or control character in the path";
      return std::nullopt;
    }
  }
  if (authority.find('@') != std::string_view::npos) {
    error = "user information in the URL is not supported";
    return std::nullopt;
  }
  HttpUrl out;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "an IPv6 address without its closing ]";
      return std::nullopt;
    }
    out.host = std::string(authority.substr(1, close - 1));
    if (!util::Cidr::parse(out.host) || out.host.find('/') != std::string::npos) {
      error = "\"" + out.host + "\" is not an IPv6 address";
      return std::nullopt;
    }
    const auto after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      error = "after ] comes :PORT";
      return std::nullopt;
    }
    if (!after.empty()) port_text = after.substr(1);
  } else {
    const auto colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    for (const char c : out.host) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '.' || c == '_';
      if (!ok) {
        error = "\"" + out.host + "\" is not a host name or address";
        return std::nullopt;
      }
    }
  }
  if (out.host.empty()) {
    error = "no host in the URL";
    return std::nullopt;
  }
  if (!port_text.empty() || authority.back() == ':') {
    const auto port = util::parse_unsigned(port_text);
    if (!port || *port < 1 || *port > 65535) {
      error = "bad port \"" + std::string(port_text) + "\" (1 to 65535)";
      return std::nullopt;
    }
    out.port = static_cast<std::uint16_t>(*port);
  }
  out.path = std::string(path.empty() ? std::string_view("/") : path);
  return out;
}

}  // namespace imapscope::transport
