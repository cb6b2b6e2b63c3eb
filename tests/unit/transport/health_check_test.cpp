// The backend health check against a scripted IMAP server on loopback (a thread with
// blocking sockets): what passes, what fails and why, that a silent server can't
// hold a check past its timeout, and the checker's rounds feeding the pool.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/transport/health_check.hpp"

namespace imapscope::transport {
namespace {

using namespace std::chrono_literals;

// One line from fd (CRLF cut), or "" at the end / after 5 s.
std::string read_line(int fd) {
  std::string line;
  char c = 0;
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 5000) == 1 && ::recv(fd, &c, 1, 0) == 1) {
    if (c == '\n') break;
    if (c != '\r') line += c;
  }
  return line;
}

void send_text(int fd, const std::string& text) { (void)::send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

// Accepts connections one after another and runs the script on each; keeps the
// lines the clients sent.
class ScriptedServer {
 public:
  using Script = std::function<void(int fd, ScriptedServer& self)>;
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    socklen_t size = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        pollfd p{listener_, POLLIN, 0};
        if (stop_) return;
        if (::poll(&p, 1, 50) != 1) continue;
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) continue;
        ++connections;
        script_(fd, *this);
        ::close(fd);
      }
    });
  }
  ~ScriptedServer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }
  // A client line, kept for the test to read.
  std::string line(int fd) {
    auto text = read_line(fd);
    std::lock_guard lock(mutex_);
    lines_.push_back(text);
    return text;
  }
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  std::atomic<int> connections{0};

 private:
  Script script_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

// Answers CAPABILITY, LOGIN (password "right") and LOGOUT as a server would.
void serve_commands(int fd, ScriptedServer& self) {
  for (;;) {
    const auto line = self.line(fd);
    if (line.empty()) return;
    const auto tag = line.substr(0, line.find(' '));
    const auto command = line.substr(tag.size() + 1);
    if (command == "CAPABILITY") {
      send_text(fd, "* CAPABILITY IMAP4rev1 ID IDLE AUTH=PLAIN\r\n" + tag + " OK done\r\n");
    } else if (command.rfind("LOGIN ", 0) == 0) {
      send_text(fd, tag + (command == "LOGIN \"probe\" \"right\"" ? " OK logged in\r\n" : " NO [AUTHENTICATIONFAILED] nope\r\n"));
    } else if (command == "LOGOUT") {
      send_text(fd, "* BYE bye\r\n" + tag + " OK done\r\n");
      return;
    } else {
      send_text(fd, tag + " BAD what\r\n");
    }
  }
}

HealthCheckOutcome run_check(std::uint16_t port, route::HealthSettings settings = {}) {
  asio::io_context io;
  HealthCheckOutcome out;
  asio::co_spawn(io, check_backend(route::Backend{"127.0.0.1", port}, settings, nullptr, true),
                 [&](std::exception_ptr e, HealthCheckOutcome outcome) {
                   EXPECT_FALSE(e);
                   out = std::move(outcome);
                 });
  io.run();
  return out;
}

TEST(HealthCheck, CapabilitiesFromTheGreeting) {
  ScriptedServer server([](int fd, ScriptedServer& self) {
    send_text(fd, "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN] ready\r\n");
    serve_commands(fd, self);
  });
  const auto outcome = run_check(server.port());
  EXPECT_TRUE(outcome.ok) << outcome.error;
  EXPECT_EQ(outcome.capabilities, "IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN");
  EXPECT_EQ(server.lines(), (std::vector<std::string>{"hc3 LOGOUT"}));
}

TEST(HealthCheck, AsksForCapabilitiesWhenTheGreetingHasNone) {
  ScriptedServer server([](int fd, ScriptedServer& self) {
    send_text(fd, "* OK ready\r\n");
    serve_commands(fd, self);
  });
  const auto outcome = run_check(server.port());
  EXPECT_TRUE(outcome.ok) << outcome.error;
  EXPECT_EQ(outcome.capabilities, "IMAP4rev1 ID IDLE AUTH=PLAIN");
  EXPECT_EQ(server.lines(), (std::vector<std::string>{"hc1 CAPABILITY", "hc3 LOGOUT"}));
}

TEST(HealthCheck, TestLoginMustSucceed) {
  ScriptedServer server([](int fd, ScriptedServer& self) {
    send_text(fd, "* OK [CAPABILITY IMAP4rev1] ready\r\n");
    serve_commands(fd, self);
  });
  route::HealthSettings settings;
  settings.login_user = "probe";
  settings.login_password = "right";
  auto outcome = run_check(server.port(), settings);
  EXPECT_TRUE(outcome.ok) << outcome.error;
  settings.login_password = "wrong \"quoted\"";
  outcome = run_check(server.port(), settings);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error, "test login: NO [AUTHENTICATIONFAILED] nope");
  EXPECT_EQ(outcome.error.find("wrong"), std::string::npos);
  const auto lines = server.lines();
  EXPECT_EQ(lines.at(2), "hc2 LOGIN \"probe\" \"wrong \\\"quoted\\\"\"");
  EXPECT_EQ(lines.back(), "hc3 LOGOUT");
  settings.login_password = "two\r\nlines";
  outcome = run_check(server.port(), settings);
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error, "the test login's user or password holds CR, LF or NUL");
}

TEST(HealthCheck, ARefusingGreetingFails) {
  ScriptedServer server([](int fd, ScriptedServer&) { send_text(fd, "* BYE Too many connections\r\n"); });
  const auto outcome = run_check(server.port());
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error, "greeting: * BYE Too many connections");
}

TEST(HealthCheck, ASilentServerCantHoldTheCheckPastItsTimeout) {
  std::atomic<bool> done{false};
  ScriptedServer server([&](int, ScriptedServer&) {
    while (!done) std::this_thread::sleep_for(10ms);
  });
  route::HealthSettings settings;
  settings.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  const auto outcome = run_check(server.port(), settings);
  const auto took = std::chrono::steady_clock::now() - start;
  done = true;
  EXPECT_FALSE(outcome.ok);
  EXPECT_EQ(outcome.error, "no answer within 300 ms");
  EXPECT_LT(took, 2s);
}

TEST(HealthCheck, NobodyListening) {
  std::uint16_t port = 0;
  { ScriptedServer gone([](int, ScriptedServer&) {}); port = gone.port(); }
  const auto outcome = run_check(port);
  EXPECT_FALSE(outcome.ok);
  EXPECT_NE(outcome.error.find("refused"), std::string::npos) << outcome.error;
}

TEST(HealthCheck, ATlsBackendWithoutATlsContextFails) {
  asio::io_context io;
  HealthCheckOutcome out;
  asio::co_spawn(io, check_backend(route::Backend{"127.0.0.1", 1, route::BackendTls::Implicit}, {}, nullptr, true),
                 [&](std::exception_ptr, HealthCheckOutcome outcome) { out = std::move(outcome); });
  io.run();
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.error, "no TLS context for a TLS backend");
}

TEST(HealthCheck, CapabilitiesOfAGreetingOrALine) {
  EXPECT_EQ(capabilities_of("* OK [CAPABILITY IMAP4rev1 ID] Dovecot ready.\r\n"), "IMAP4rev1 ID");
  EXPECT_EQ(capabilities_of("* OK [ALERT] x [capability IMAP4rev1]"), "IMAP4rev1");
  EXPECT_EQ(capabilities_of("* CAPABILITY IMAP4rev1 IDLE\r\n"), "IMAP4rev1 IDLE");
  EXPECT_EQ(capabilities_of("* OK [CAPABILITY IMAP4rev1"), "");
  EXPECT_EQ(capabilities_of("* OK ready"), "");
}

class CountingTelemetry final : public route::RouteTelemetry {
 public:
  void lookup_done(std::string_view, route::LookupStatus, double) override {}
  void login_replayed(std::string_view) override {}
  void backend_checked(const route::Backend&, bool ok) override { ++(ok ? good : bad); }
  std::atomic<int> good{0}, bad{0};
};

TEST(HealthChecker, RoundsFeedThePool) {
  ScriptedServer up([](int fd, ScriptedServer& self) {
    send_text(fd, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
    serve_commands(fd, self);
  });
  std::uint16_t closed_port = 0;
  { ScriptedServer gone([](int, ScriptedServer&) {}); closed_port = gone.port(); }
  route::Backends pool;
  const route::Backend good{"127.0.0.1", up.port()}, bad{"127.0.0.1", closed_port};
  pool.add(good, true);
  pool.add(bad, true);
  CountingTelemetry telemetry;
  asio::io_context io;
  route::HealthSettings settings;
  settings.interval = 100ms;
  settings.timeout = 1000ms;
  {
    HealthChecker checker(io.get_executor(), pool, settings, nullptr, true, &telemetry);
    checker.start();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline && (up.connections < 3 || telemetry.bad < 3)) {
      io.run_for(50ms);
    }
    checker.stop();
  }
  io.run_for(1s);  // what runs ends
  EXPECT_EQ(pool.admit(good), route::Admission::Ok);
  EXPECT_EQ(pool.admit(bad), route::Admission::Down);
  EXPECT_EQ(pool.shared_capabilities(), "IMAP4rev1 AUTH=PLAIN");
  EXPECT_GE(telemetry.good, 3);
  EXPECT_GE(telemetry.bad, 3);
  const auto checks = up.connections.load();
  io.restart();
  io.run_for(300ms);
  EXPECT_EQ(up.connections, checks);  // stopped: no more rounds
}

}  // namespace
}  // namespace imapscope::transport
