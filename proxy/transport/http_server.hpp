// A small HTTP/1.1 server for the admin address (metrics, admin API, live page) on
// a thread of its own, so a slow scrape or browser never touches the relay's loops.
// One request per connection (Connection: close), bounded request sizes and
// connection counts, and streamed answers (server-sent events) for live tails.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

struct HttpRequest {
  std::string method;  // "GET"
  std::string path;    // "/api/sessions" (no query)
  std::map<std::string, std::string> query;    // decoded
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string header(const std::string& lower_name) const;
};

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
  std::size_t max_connections = 64;
  std::chrono::seconds request_timeout{10};
  std::chrono::seconds stream_keepalive{15};  // a comment line, so dead clients are found
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
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::ip::tcp::socket socket);

  HttpHandler handler_;
  HttpLimits limits_;
  asio::io_context io_{1};
  asio::ip::tcp::acceptor acceptor_{io_};
  asio::ip::tcp::endpoint bound_;
  std::size_t connections_ = 0;  // the server thread's own
  std::thread thread_;
};

// Parses "GET /path?a=b HTTP/1.1\r\nName: value\r\n..." (the head without the final
// empty line); nullopt when it isn't a request line and headers.
std::optional<HttpRequest> parse_http_head(std::string_view head);
std::string percent_decode(std::string_view text);

}  // namespace imapscope::transport
