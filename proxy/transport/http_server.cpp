#include "proxy/transport/http_server.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/write.hpp>

#include <cctype>
#include <stdexcept>

#include "proxy/imap/abnf.hpp"
#include "proxy/util/log.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::transport {
namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string response_head(const HttpResponse& r, bool streamed) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reason_phrase(r.status)) + "\r\n";
  head += "Content-Type: " + r.content_type + "\r\n";
  if (!streamed) head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  head += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n";
  for (const auto& [name, value] : r.headers) head += name + ": " + value + "\r\n";
  return head + "\r\n";
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

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

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::optional<HttpRequest> parse_http_head(std::string_view head) {
  HttpRequest r;
  auto line_end = head.find("\r\n");
  const auto request_line = head.substr(0, line_end);
  const auto sp1 = request_line.find(' ');
  const auto sp2 = request_line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 <= sp1 || request_line.substr(sp2 + 1).substr(0, 5) != "HTTP/") {
    return std::nullopt;
  }
  r.method = std::string(request_line.substr(0, sp1));
  const auto target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (target.empty() || target[0] != '/') return std::nullopt;
  const auto question = target.find('?');
  r.path = percent_decode(target.substr(0, question));
  if (question != std::string_view::npos) {
    auto query = target.substr(question + 1);
    while (!query.empty()) {
      const auto amp = query.find('&');
      const auto pair = query.substr(0, amp);
      const auto eq = pair.find('=');
      const auto value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
      r.query[percent_decode(pair.substr(0, eq))] = percent_decode(value);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
  }
  while (line_end != std::string_view::npos) {
    const auto start = line_end + 2;
    line_end = head.find("\r\n", start);
    const auto line = line_end == std::string_view::npos ? head.substr(start) : head.substr(start, line_end - start);
    if (line.empty()) continue;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    r.headers[imap::ascii_lower(line.substr(0, colon))] = std::string(value);
  }
  return r;
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
}

asio::awaitable<void> HttpServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // the client went away before it was taken
    if (connections_ >= limits_.max_connections) {
      static constexpr std::string_view kBusy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      asio::error_code ignored;
      asio::write(socket, asio::buffer(kBusy), ignored);
      continue;
    }
    asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> HttpServer::serve(asio::ip::tcp::socket socket) {
  ++connections_;
  struct Leave {
    std::size_t& n;
    ~Leave() { --n; }
  } leave{connections_};
  // A client that doesn't finish its request in time is cut off.
  asio::steady_timer deadline(io_, limits_.request_timeout);
  deadline.async_wait([&socket](asio::error_code ec) {
    if (!ec) socket.close();
  });
  std::string buffer;
  auto [ec, head_end] = co_await asio::async_read_until(
      socket, asio::dynamic_buffer(buffer, limits_.max_head), "\r\n\r\n", kNoThrow);
  HttpResponse response;
  std::optional<HttpRequest> request;
  if (ec == asio::error::not_found) {
    response = HttpResponse::error(431, "request head over " + std::to_string(limits_.max_head) + " bytes");
  } else if (ec) {
    co_return;
  } else if (!(request = parse_http_head(std::string_view(buffer).substr(0, head_end - 2)))) {
    response = HttpResponse::error(400, "not an HTTP request");
  } else if (!request->header("transfer-encoding").empty()) {
    response = HttpResponse::error(501, "chunked request bodies are not supported: send Content-Length");
  } else {
    const auto length_text = request->header("content-length");
    std::size_t length = 0;
    for (const char c : length_text) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || length > limits_.max_body) {
        length = limits_.max_body + 1;
        break;
      }
      length = length * 10 + static_cast<std::size_t>(c - '0');
    }
    if (length > limits_.max_body) {
      response = HttpResponse::error(413, "request body over " + std::to_string(limits_.max_body) + " bytes");
    } else {
      request->body = buffer.substr(head_end);
      if (request->body.size() < length) {
        const auto missing = length - request->body.size();
        std::string rest(missing, '\0');
        auto [read_ec, n] = co_await asio::async_read(socket, asio::buffer(rest), kNoThrow);
        if (read_ec) co_return;
        request->body += rest.substr(0, n);
      }
      request->body.resize(length);
      response = handler_(*request);
    }
  }
  deadline.cancel();
  const bool streamed = static_cast<bool>(response.stream);
  const std::string first = response_head(response, streamed) + response.body;
  // Awaited into locals first: g++ 12 miscompiles co_await inside an if condition.
  auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(first), kNoThrow);
  if (write_ec) co_return;
  if (!streamed) {
    asio::error_code ignored;
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    co_return;
  }
  // The live tail: poll the source, send what is new; a comment now and then so a
  // client that vanished is noticed by a failing write.
  asio::steady_timer tick(io_);
  auto quiet = std::chrono::steady_clock::duration::zero();
  for (;;) {
    auto more = response.stream();
    if (!more) break;
    if (more->empty() && quiet >= limits_.stream_keepalive) *more = ": keepalive\n\n";
    if (!more->empty()) {
      quiet = {};
      auto [more_ec, sent] = co_await asio::async_write(socket, asio::buffer(*more), kNoThrow);
      if (more_ec) break;
    }
    quiet += response.interval;
    tick.expires_after(response.interval);
    auto [wait_ec] = co_await tick.async_wait(kNoThrow);
    if (wait_ec) break;
  }
  asio::error_code ignored;
  socket.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace imapscope::transport
