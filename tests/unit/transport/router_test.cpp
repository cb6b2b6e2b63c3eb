// The lookup service's HTTP exchange and the Router on real loopback sockets: a tiny
// server on 127.0.0.1 (one thread, one scripted answer per connection) answers OK,
// slowly, with garbage, too much, or not at all; every exchange ends in time with a
// value, never an exception. Then the Router: map first, cache, HTTP, WAIT, reload.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/transport/http_client.hpp"
#include "proxy/transport/router.hpp"
#include "proxy/util/json_reader.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What the server does with one connection, given the request it read.
using Script = std::function<void(int fd, const std::string& request)>;

void send_text(int fd, const std::string& text) { (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

class TinyHttpServer {
 public:
  explicit TinyHttpServer(Script script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    socklen_t size = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~TinyHttpServer() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    thread_.join();
  }
  std::uint16_t port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  // The count once n came, or what came within 5 s (the server may be busy sleeping).
  std::size_t wait_for_requests(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (requests().size() < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return requests().size();
  }

 private:
  void serve() {
    while (!stop_) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      timeval timeout{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      std::string request;
      char chunk[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        request.append(chunk, static_cast<std::size_t>(n));
      }
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
      }
      script_(fd, request);
      ::close(fd);
    }
  }

  Script script_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

template <typename T>
T run(asio::io_context& io, asio::awaitable<T> work) {
  T out{};
  bool done = false;
  asio::co_spawn(io, std::move(work), [&](std::exception_ptr error, T value) {
    EXPECT_FALSE(error) << "an exception left the coroutine";
    out = std::move(value);
    done = true;
  });
  io.run();
  EXPECT_TRUE(done);
  return out;
}

HttpClientResult exchange(std::uint16_t port, std::chrono::milliseconds deadline = 2000ms, std::size_t max = 64 * 1024) {
  asio::io_context io;
  return run(io, http_exchange(io.get_executor(), "127.0.0.1", port, "GET / HTTP/1.0\r\nHost: x\r\n\r\n", deadline, max));
}

Script answer_with(std::string text) {
  return [text](int fd, const std::string&) { send_text(fd, text); };
}

const std::string kOk = "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n\r\n";

TEST(HttpClient, AnAnswerEndedByTheClose) {
  TinyHttpServer server(answer_with(kOk));
  const auto result = exchange(server.port());
  ASSERT_EQ(result.error, HttpClientError::None) << result.detail;
  EXPECT_EQ(result.answer.status, 200);
  EXPECT_EQ(result.answer.header("auth-server"), "127.0.0.1");
  EXPECT_FALSE(result.cut_by_deadline);
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0], "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
}

TEST(HttpClient, AContentLengthEndsTheAnswerWithoutAClose) {
  TinyHttpServer server([](int fd, const std::string&) {
    send_text(fd, "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 19\n\n{\"host\":\"10.0.0.1\"}");
    std::this_thread::sleep_for(1500ms);  // open well past the answer
  });
  const auto started = Clock::now();
  const auto result = exchange(server.port(), 5000ms);
  ASSERT_EQ(result.error, HttpClientError::None) << result.detail;
  EXPECT_EQ(result.answer.body, "{\"host\":\"10.0.0.1\"}");  // bare LFs end lines too
  EXPECT_LT(Clock::now() - started, 1000ms);
}

TEST(HttpClient, ASlowServerEndsAtTheDeadline) {
  TinyHttpServer server([](int fd, const std::string&) {
    std::this_thread::sleep_for(1500ms);
    send_text(fd, kOk);
  });
  const auto started = Clock::now();
  const auto result = exchange(server.port(), 300ms);
  const auto took = Clock::now() - started;
  EXPECT_EQ(result.error, HttpClientError::Timeout);
  EXPECT_NE(result.detail.find("300 ms"), std::string::npos) << result.detail;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 800ms);
}

TEST(HttpClient, AHeadWithoutCloseIsTakenAtTheDeadline) {
  TinyHttpServer server([](int fd, const std::string&) {
    send_text(fd, kOk);
    std::this_thread::sleep_for(1500ms);
  });
  const auto result = exchange(server.port(), 300ms);
  ASSERT_EQ(result.error, HttpClientError::None) << result.detail;
  EXPECT_TRUE(result.cut_by_deadline);
  EXPECT_EQ(result.answer.header("Auth-Port"), "1143");
}

TEST(HttpClient, ARefusedConnection) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t size = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);  // nobody listens there now
  const auto result = exchange(ntohs(address.sin_port));
  EXPECT_EQ(result.error, HttpClientError::Connect);
  EXPECT_NE(result.detail.find("refused"), std::string::npos) << result.detail;
}

TEST(HttpClient, GarbageIsMalformed) {
  for (const std::string garbage : {"SSH-2.0-OpenSSH_9.2\r\n\r\n", "HTTP/1.0 200 OK\r\n folded: x\r\n\r\n",
                                    "HTTP/1.0 200 OK\r\nName : x\r\n\r\n", "HTTP/1.0 200 OK\r\nA: b\rc\r\n\r\n",
                                    "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                                    "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort", "HTTP/1.0 2"}) {
    TinyHttpServer server(answer_with(garbage));
    const auto result = exchange(server.port());
    EXPECT_EQ(result.error, HttpClientError::Malformed) << garbage << " -> " << result.detail;
  }
  TinyHttpServer silent(answer_with(""));
  EXPECT_EQ(exchange(silent.port()).error, HttpClientError::Io);
}

TEST(HttpClient, AnOversizedAnswerIsCutOff) {
  TinyHttpServer server(answer_with("HTTP/1.0 200 OK\r\n\r\n" + std::string(100000, 'x')));
  const auto result = exchange(server.port(), 2000ms, 4096);
  EXPECT_EQ(result.error, HttpClientError::TooLarge);
  TinyHttpServer headers(answer_with("HTTP/1.0 200 OK\r\n" + std::string(70000, 'h')));
  EXPECT_EQ(exchange(headers.port(), 2000ms, 1 << 20).error, HttpClientError::TooLarge);
  std::string many = "HTTP/1.0 200 OK\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  TinyHttpServer lines(answer_with(many + "\r\n"));
  EXPECT_EQ(exchange(lines.port()).error, HttpClientError::Malformed);
}

TEST(HttpUrl, ParsesWhatRoutingHttpTakes) {
  std::string error;
  auto url = parse_http_url("http://127.0.0.1:8080/auth?x=1", error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 8080);
  EXPECT_EQ(url->path, "/auth?x=1");
  EXPECT_EQ(url->host_header(), "127.0.0.1");
  url = parse_http_url("http://[::1]/", error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 80);
  EXPECT_EQ(url->host_header(), "[::1]");
  url = parse_http_url("http://auth.example", error);
  ASSERT_TRUE(url);
  EXPECT_EQ(url->path, "/");
  for (const char* bad : {"https://a/", "ftp://a", "http://", "http://a:0/", "http://a:99999/", "http://u:p@a/",
                          "http://a/b c", "http://[::1/", "http://a b/"}) {
    EXPECT_FALSE(parse_http_url(bad, error)) << bad;
  }
}

// --- the Router ---

struct Recorded {
  std::string source;
  route::LookupStatus status;
};
class RecordingTelemetry : public route::RouteTelemetry {
 public:
  void lookup_done(std::string_view source, route::LookupStatus status, double) override {
    std::lock_guard lock(mutex);
    lookups.push_back({std::string(source), status});
  }
  void login_replayed(std::string_view) override {}
  void backend_checked(const route::Backend&, bool) override {}
  std::mutex mutex;
  std::vector<Recorded> lookups;
};

route::LoginRequest login(std::string user, std::string secret = "pw") {
  route::LoginRequest request;
  request.user = std::move(user);
  request.secret = std::move(secret);
  request.method = "plain";
  request.client_ip = "127.0.0.1";
  return request;
}

route::LookupResult ask(Router& router, const route::LoginRequest& request) {
  asio::io_context io;
  return run(io, router.lookup(request));
}

TEST(Router, MapFirstThenCacheThenHttp) {
  TinyHttpServer server(answer_with(kOk));
  const auto map = testing::write_temp_file("imapscope-router-map-", "alice 10.0.0.1:143\nbob - \"gone\"\n");
  RecordingTelemetry telemetry;
  RouterSettings settings;
  settings.map_file = map;
  settings.http_url = "http://127.0.0.1:" + std::to_string(server.port()) + "/auth";
  Router router(settings, &telemetry);
  EXPECT_TRUE(router.has_map());
  EXPECT_TRUE(router.has_http());
  EXPECT_EQ(ask(router, login("alice")).route.backend.host, "10.0.0.1");
  EXPECT_EQ(ask(router, login("bob")).status, route::LookupStatus::Refused);
  EXPECT_TRUE(server.requests().empty());  // the map answered both
  const auto first = ask(router, login("carol"));
  ASSERT_EQ(first.status, route::LookupStatus::Routed) << first.message;
  EXPECT_EQ(first.route.backend.name(), "127.0.0.1:1143");
  EXPECT_FALSE(first.from_cache);
  const auto again = ask(router, login("carol"));
  EXPECT_TRUE(again.from_cache);
  ask(router, login("carol", "other password"));
  ASSERT_EQ(server.requests().size(), 2u);  // the cache answered once
  EXPECT_NE(server.requests()[0].find("GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\n"), std::string::npos);
  EXPECT_NE(server.requests()[1].find("Auth-Pass: other%20password\r\n"), std::string::npos);
  std::vector<std::string> sources;
  for (const auto& r : telemetry.lookups) sources.push_back(r.source);
  EXPECT_EQ(sources, (std::vector<std::string>{"map", "map", "http", "cache", "http"}));
}

TEST(Router, AServiceThatIsDownOrSlowIsUnavailableInTime) {
  TinyHttpServer slow([](int, const std::string&) { std::this_thread::sleep_for(1500ms); });
  RouterSettings settings;
  settings.http_url = "http://127.0.0.1:" + std::to_string(slow.port()) + "/";
  settings.http_timeout = 200ms;
  Router router(settings, nullptr);
  const auto started = Clock::now();
  const auto result = ask(router, login("alice"));
  EXPECT_EQ(result.status, route::LookupStatus::Unavailable);
  EXPECT_LT(Clock::now() - started, 700ms);
  EXPECT_NE(result.message.find("timeout"), std::string::npos) << result.message;
  EXPECT_EQ(result.message.find("pw"), std::string::npos);
  // Unavailable is not cached: the next login asks again.
  ask(router, login("alice"));
  EXPECT_EQ(slow.wait_for_requests(2), 2u);
}

TEST(Router, WaitAsksAgain) {
  std::atomic<int> calls{0};
  TinyHttpServer server([&](int fd, const std::string&) {
    send_text(fd, ++calls == 1 ? "HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 0\r\n\r\n" : kOk);
  });
  RouterSettings settings;
  settings.http_url = "http://127.0.0.1:" + std::to_string(server.port());
  Router router(settings, nullptr);
  const auto result = ask(router, login("alice"));
  EXPECT_EQ(result.status, route::LookupStatus::Routed) << result.message;
  EXPECT_EQ(calls.load(), 2);
}

TEST(Router, ABrokenMapKeepsTheOldOne) {
  const auto dir = testing::make_temp_dir("imapscope-router-");
  const auto path = dir + "/routes.map";
  std::ofstream(path) << "* 10.0.0.1:143\n";
  RouterSettings settings;
  settings.map_file = path;
  Router router(settings, nullptr);
  std::ofstream(path) << "* 10.0.0.2:143\nx 10.0.0.3:99999\n";
  std::string error;
  EXPECT_FALSE(router.reload_map(error));
  EXPECT_EQ(error, path + ":2:12: bad port \"99999\" (1 to 65535)");
  EXPECT_EQ(ask(router, login("u")).route.backend.host, "10.0.0.1");
  std::ofstream(path) << "* 10.0.0.2:143\n";
  EXPECT_TRUE(router.reload_map(error));
  EXPECT_EQ(ask(router, login("u")).route.backend.host, "10.0.0.2");
  EXPECT_EQ(router.map_backends().size(), 1u);
  settings.map_file = dir + "/missing.map";
  EXPECT_THROW((Router{settings, nullptr}), util::InputError);
  EXPECT_THROW((Router{RouterSettings{}, nullptr}), util::InputError);
}

}  // namespace
}  // namespace imapscope::transport
