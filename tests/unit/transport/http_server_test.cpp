// The admin HTTP server's budgets on real loopback sockets: a client that stops
// reading a stream is dropped after the write time limit (its stream slot comes
// free), and idle connections make room for a request when every slot is taken.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "proxy/transport/http_server.hpp"

namespace imapscope::transport {
namespace {

using namespace std::chrono_literals;

int connect_to(std::uint16_t port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  return fd;
}

void send_all(int fd, const std::string& data) { ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), static_cast<ssize_t>(data.size())); }

// The status of the answer to `path` (0 when the connection closed first).
int status_of(std::uint16_t port, const std::string& path) {
  const int fd = connect_to(port);
  send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  char head[13] = {};
  const auto n = ::recv(fd, head, 12, MSG_WAITALL);
  ::close(fd);
  return n == 12 ? std::stoi(std::string(head + 9, 3)) : 0;
}

HttpResponse answer(const HttpRequest& request) {
  if (request.path != "/stream") return HttpResponse::json(200, "{}");
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.interval = 10ms;
  r.stream = [] { return std::optional<std::string>(std::string(64 << 10, 'x')); };  // more than anyone reads
  return r;
}

TEST(HttpServer, AStreamNobodyReadsIsDroppedAfterTheWriteTimeLimit) {
  HttpLimits limits;
  limits.max_streams = 1;
  limits.write_timeout = 300ms;
  HttpServer server({"127.0.0.1", 0}, answer, limits);
  const auto port = server.bound().port();
  const int stalled = connect_to(port, 4096);
  send_all(stalled, "GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(status_of(port, "/stream"), 503);  // the one stream slot is taken
  // The stalled client reads nothing: its writes stop, and after the time limit the
  // server drops it and the slot is free again.
  const auto started = std::chrono::steady_clock::now();
  int status = 503;
  while (status == 503 && std::chrono::steady_clock::now() - started < 10s) {
    std::this_thread::sleep_for(50ms);
    status = status_of(port, "/stream");
  }
  EXPECT_EQ(status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 200ms);
  ::close(stalled);
}

TEST(HttpServer, IdleConnectionsMakeRoomForARequest) {
  HttpLimits limits;
  limits.max_connections = 4;
  limits.head_timeout = 30s;  // far away: room is made by dropping, not by time
  HttpServer server({"127.0.0.1", 0}, answer, limits);
  const auto port = server.bound().port();
  std::vector<int> idle;
  for (int i = 0; i < 10; ++i) idle.push_back(connect_to(port));
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(status_of(port, "/healthz"), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  // The oldest idle ones were closed for the newcomers; the newest are still open.
  char byte = 0;
  EXPECT_EQ(::recv(idle.front(), &byte, 1, 0), 0);
  for (const int fd : idle) ::close(fd);
}

}  // namespace
}  // namespace imapscope::transport
