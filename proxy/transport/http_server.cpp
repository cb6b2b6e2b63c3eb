#include "proxy/transport/http_server.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <array>
#include <stdexcept>

#include "proxy/util/text.hpp"

namespace imapscope::transport {
namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

// On every answer: nothing here may be framed by another page (clickjacking the
// capture form), cached, sniffed into another type, or leak its URL onwards.
constexpr std::string_view kAlwaysHeaders =
    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\nConnection: close\r\n";

std::string response_head(const HttpResponse& r, bool streamed) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason_phrase(r.status)) + "\r\n";
  if (r.status != 204) head += "Content-Type: " + r.content_type + "\r\n";
  if (!streamed && r.status != 204) head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  head += kAlwaysHeaders;
  bool policy = false;
  for (const auto& [name, value] : r.headers) {
    if (name == "Content-Security-Policy") {
      policy = true;
      head += name + ": " + value;
      if (value.find("frame-ancestors") == std::string::npos) head += "; frame-ancestors 'none'";
      head += "\r\n";
    } else {
      head += name + ": " + value + "\r\n";
    }
  }
  if (!policy) head += "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n";
  return head + "\r\n";
}

}  // namespace

// One client connection. Shared with its deadline's handler, so the handler can
// close the socket whenever it fires, even after the coroutine moved on.
struct HttpServer::Connection {
  explicit Connection(asio::ip::tcp::socket s) : socket(std::move(s)), deadline(socket.get_executor()) {}
  asio::ip::tcp::socket socket;
  asio::steady_timer deadline;
  bool waiting_for_request = true;  // may be dropped for a newcomer when the slots are full
  bool listed = false;              // in requests_ at `where`
  std::list<std::shared_ptr<Connection>>::iterator where;
};

namespace {

template <typename Connection>
void arm(const std::shared_ptr<Connection>& c, std::chrono::milliseconds limit) {
  c->deadline.expires_after(limit);
  c->deadline.async_wait([c](asio::error_code ec) {
    if (ec) return;
    asio::error_code ignored;
    c->socket.close(ignored);
  });
}

}  // namespace

HttpResponse HttpResponse::json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::error(int status, const std::string& message) {
  std::string body = "{\"error\": ";
  util::append_json_string(body, message);
  return json(status, body + "}");
}

HttpServer::HttpServer(const Endpoint& address, HttpHandler handler, HttpLimits limits)
    : handler_(std::move(handler)), limits_(limits) {
  asio::error_code ec;
  const auto ip = asio::ip::make_address(address.host, ec);
  if (ec) throw std::runtime_error("not an IP address: " + address.host);
  const asio::ip::tcp::endpoint endpoint(ip, address.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error(ec.message());
  bound_ = acceptor_.local_endpoint();
  asio::co_spawn(io_, accept_loop(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

HttpServer::~HttpServer() {
  io_.stop();
  thread_.join();
  for (auto& c : requests_) c->listed = false;
  requests_.clear();
}

bool HttpServer::drop_oldest_waiting() {
  for (auto& c : requests_) {
    if (!c->waiting_for_request) continue;
    const auto dropped = c;  // erased below: keep it alive until closed
    leave_requests(*dropped);
    asio::error_code ignored;
    dropped->socket.close(ignored);
    dropped->deadline.cancel();
    return true;
  }
  return false;
}

void HttpServer::leave_requests(Connection& c) {
  if (!c.listed) return;
  c.listed = false;
  requests_.erase(c.where);
}

asio::awaitable<void> HttpServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // the client went away before it was taken
    // Full: a connection that hasn't sent its request yet (idle, or slow on purpose)
    // makes room, so a probe or the operator always gets through.
    if (requests_.size() >= limits_.max_connections && !drop_oldest_waiting()) {
      const std::string busy = response_head(HttpResponse::error(503, "busy"), true);
      asio::error_code ignored;
      socket.non_blocking(true, ignored);  // a fresh socket's buffer takes it; never wait
      socket.write_some(asio::buffer(busy), ignored);
      continue;
    }
    auto c = std::make_shared<Connection>(std::move(socket));
    c->where = requests_.insert(requests_.end(), c);
    c->listed = true;
    asio::co_spawn(io_, serve(std::move(c)), asio::detached);
  }
}

asio::awaitable<bool> HttpServer::read_request(const std::shared_ptr<Connection>& c, HttpRequest& request,
                                               std::optional<HttpResponse>& refusal) {
  std::string buffer;
  std::array<char, 4096> chunk{};
  HeadScan scan;
  for (;;) {
    scan = scan_http_head(buffer);
    if (scan.state == HeadScan::State::Malformed) {
      refusal = HttpResponse::error(400, scan.error);
      co_return true;
    }
    const auto head_size = scan.state == HeadScan::State::Complete ? scan.end : buffer.size();
    if (head_size > limits_.max_head) {
      refusal = HttpResponse::error(431, "request head over " + std::to_string(limits_.max_head) + " bytes");
      co_return true;
    }
    if (scan.state == HeadScan::State::Complete) break;
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(chunk), kNoThrow);
    if (ec) co_return false;  // gone, or cut off by its deadline
    buffer.append(chunk.data(), n);
  }
  auto parsed = parse_http_head(std::string_view(buffer).substr(0, scan.end - 2));
  if (!parsed.request) {
    refusal = HttpResponse::error(parsed.status, parsed.error);
    co_return true;
  }
  request = std::move(*parsed.request);
  if (request.content_length > limits_.max_body) {
    refusal = HttpResponse::error(413, "request body over " + std::to_string(limits_.max_body) + " bytes");
    co_return true;
  }
  request.body = buffer.substr(scan.end);
  if (request.body.size() < request.content_length) {
    arm(c, limits_.request_timeout);
    const auto have = request.body.size();
    request.body.resize(request.content_length);
    auto [ec, n] = co_await asio::async_read(c->socket, asio::buffer(request.body.data() + have, request.content_length - have),
                                             kNoThrow);
    if (ec) co_return false;
  }
  request.body.resize(request.content_length);  // what came after it is not read
  co_return true;
}

asio::awaitable<bool> HttpServer::write(const std::shared_ptr<Connection>& c, std::string_view data) {
  arm(c, limits_.write_timeout);
  auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(data), kNoThrow);
  c->deadline.cancel();
  co_return !ec;
}

asio::awaitable<void> HttpServer::serve(std::shared_ptr<Connection> c) {
  struct Leave {
    HttpServer& server;
    Connection& c;
    ~Leave() {
      server.leave_requests(c);
      c.deadline.cancel();
    }
  } leave{*this, *c};
  // A client that doesn't send its request in time is cut off.
  arm(c, limits_.head_timeout);
  HttpRequest request;
  std::optional<HttpResponse> refusal;
  const bool received = co_await read_request(c, request, refusal);
  if (!received) co_return;
  c->waiting_for_request = false;
  c->deadline.cancel();
  const bool head_only = request.method == "HEAD";
  if (head_only) request.method = "GET";  // the same answer without its body
  HttpResponse response;
  if (refusal) {
    response = std::move(*refusal);
  } else if (request.method != "GET" && request.method != "POST" && request.method != "DELETE") {
    response = HttpResponse::error(501, "method " + request.method + " is not served here");
  } else {
    response = handler_(request);
  }
  bool streamed = static_cast<bool>(response.stream) && !head_only;
  if (streamed && streams_ >= limits_.max_streams) {
    response = HttpResponse::error(503, "too many live tails open (" + std::to_string(limits_.max_streams) +
                                            "): close one, or raise admin_limits.streams");
    streamed = false;
  }
  const std::string first = response_head(response, static_cast<bool>(response.stream)) + (head_only ? "" : response.body);
  if (!streamed) {
    // Awaited into locals first: g++ 12 miscompiles co_await inside an if condition.
    const bool sent = co_await write(c, first);
    asio::error_code ignored;
    if (sent) c->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    if (sent && refusal) co_await linger(c);
    co_return;
  }
  leave_requests(*c);  // a tail counts against the streams' budget, not the requests'
  ++streams_;
  struct Release {
    std::size_t& n;
    ~Release() { --n; }
  } release{streams_};
  const bool sent = co_await write(c, first);
  if (sent) co_await stream(c, response);
  asio::error_code ignored;
  c->socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

// A refused request may have left bytes unread (a body, the rest of a long head):
// closing on them would send a reset that can overtake the answer. What still comes
// is read and dropped for a moment, until the client closes; the connection may be
// dropped for a newcomer meanwhile.
asio::awaitable<void> HttpServer::linger(const std::shared_ptr<Connection>& c) {
  c->waiting_for_request = true;
  arm(c, std::chrono::milliseconds(1000));
  std::array<char, 4096> sink{};
  for (std::size_t dropped = 0; dropped < limits_.max_head + limits_.max_body;) {
    auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(sink), kNoThrow);
    if (ec) break;
    dropped += n;
  }
  c->deadline.cancel();
}

// The live tail: poll the source, send what is new; a comment now and then so a
// client that vanished is noticed by a failing write; a client that stops reading
// is dropped by the write's time limit; after stream_max the tail ends (an
// EventSource reconnects with Last-Event-ID and goes on where it was).
asio::awaitable<void> HttpServer::stream(const std::shared_ptr<Connection>& c, HttpResponse& response) {
  asio::steady_timer tick(io_);
  const auto until = std::chrono::steady_clock::now() + limits_.stream_max;
  auto quiet = std::chrono::steady_clock::duration::zero();
  for (;;) {
    if (std::chrono::steady_clock::now() >= until) {
      co_await write(c, ": time limit of this stream reached, reconnect to go on\n\n");
      co_return;
    }
    auto more = response.stream();
    if (!more) co_return;
    if (more->empty() && quiet >= limits_.stream_keepalive) *more = ": keepalive\n\n";
    if (!more->empty()) {
      quiet = {};
      const bool sent = co_await write(c, *more);
      if (!sent) co_return;
    }
    quiet += response.interval;
    tick.expires_after(response.interval);
    auto [wait_ec] = co_await tick.async_wait(kNoThrow);
    if (wait_ec) co_return;
  }
}

}  // namespace imapscope::transport
