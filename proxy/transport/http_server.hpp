// A small HTTP/1.1 server for the admin address (metrics, admin API, live page) on
// a thread of its own, so a slow scrape or browser never touches the relay's loops.
// One request per connection (Connection: close), strict parsing (http_request.hpp),
// and budgets that keep the probes answered whatever else comes: requests and
// event streams (live tails) count apart, a request must come within a few
// seconds, and when every request slot is taken the oldest connection still
// waiting for its request is dropped to make room. Every write has a time limit.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "proxy/transport/http_request.hpp"
#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A streamed answer: after body, called every `interval` for more bytes until it
  // returns nullopt (the stream ended) or the client went away.
  std::function<std::optional<std::string>()> stream;
  std::chrono::milliseconds interval{250};

  static HttpResponse json(int status, std::string body);
  static HttpResponse error(int status, const std::string& message);  // {"error": message}
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpLimits {
  std::size_t max_head = 16 << 10;
  std::size_t max_body = 64 << 10;
  std::size_t max_connections = 64;  // waiting for or getting an answer (streams apart)
  std::size_t max_streams = 16;      // live tails open at once
  std::chrono::milliseconds head_timeout{5000};     // the request head must be in by then
  std::chrono::milliseconds request_timeout{10000};  // and its body
  std::chrono::milliseconds write_timeout{10000};    // each write; a client that doesn't read is dropped
  std::chrono::seconds stream_max{3600};             // a tail ends then (EventSource reconnects)
  std::chrono::seconds stream_keepalive{15};         // a comment line, so dead clients are found
};

class HttpServer {
 public:
  // Binds (throws std::runtime_error when it can't) and starts serving on its own
  // thread; handler runs on that thread.
  HttpServer(const Endpoint& address, HttpHandler handler, HttpLimits limits = {});
  ~HttpServer();  // stops the thread, drops open connections
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  asio::ip::tcp::endpoint bound() const { return bound_; }

 private:
  struct Connection;
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<Connection> connection);
  // false when the client went away (or was cut off); a refusal when the request is bad.
  asio::awaitable<bool> read_request(const std::shared_ptr<Connection>& connection, HttpRequest& request,
                                     std::optional<HttpResponse>& refusal);
  asio::awaitable<bool> write(const std::shared_ptr<Connection>& connection, std::string_view data);
  asio::awaitable<void> stream(const std::shared_ptr<Connection>& connection, HttpResponse& response);
  asio::awaitable<void> linger(const std::shared_ptr<Connection>& connection);
  bool drop_oldest_waiting();
  void leave_requests(Connection& connection);

  HttpHandler handler_;
  HttpLimits limits_;
  // The server thread's own: connections waiting for or getting an answer, oldest
  // first, and the streams open. Declared before io_ so that they outlive the
  // coroutines io_ destroys.
  std::list<std::shared_ptr<Connection>> requests_;
  std::size_t streams_ = 0;
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_{io_};
  asio::ip::tcp::endpoint bound_;
  std::thread thread_;
};

}  // namespace imapscope::transport
