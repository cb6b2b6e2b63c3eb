// The running proxy: one event loop per thread, every listener accepted on every
// loop (SO_REUSEPORT spreads connections), and the drain on SIGTERM/SIGINT: stop
// accepting, let sessions finish for the grace period, then BYE the rest.
#pragma once

#include <atomic>
#include <ctime>
#include <string>
#include <memory>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include "proxy/transport/relay.hpp"
#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

class Router;
class HealthChecker;

// A listener's certificates as the metrics show them.
struct ListenerTlsStatus {
  std::string listener;
  std::time_t earliest_expiry = 0;  // notAfter of the certificate in force that expires first
  std::uint64_t reloads_ok = 0;
  std::uint64_t reloads_failed = 0;
};

class Proxy {
 public:
  // Builds TLS contexts and binds every listener; throws std::runtime_error with the
  // listener's name on failure (start-up only).
  explicit Proxy(const ProxySettings& settings);
  ~Proxy();

  // Runs until a drain completes. Returns the process exit code.
  int run();
  // The addresses actually bound (port 0 resolved), per listener in order.
  const std::vector<asio::ip::tcp::endpoint>& bound() const { return bound_; }
  // From SIGTERM/SIGINT on: no new sessions (readiness probes say so). Any thread.
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  std::size_t active_sessions() const { return active_.load(std::memory_order_relaxed); }
  // The listeners with TLS on the client leg. Any thread.
  std::vector<ListenerTlsStatus> tls_status() const;
  // Routing mode: ends the sessions a kick names, each with a BYE at a random moment
  // within the spread; returns how many. Any thread (it waits for the loops' count).
  std::size_t kick(const route::KickRequest& request) const;

 private:
  struct Loop {
    asio::io_context io{1};
    std::vector<asio::ip::tcp::acceptor> acceptors;
    // Declared last, so destroyed first: relays close their sockets while the
    // io_context still exists (their pending handlers are then dropped unrun).
    RelayRegistry registry;
  };

  asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor, const ListenerRuntime& runtime, Loop& loop);
  asio::awaitable<void> handle_signals();
  void reload_rules();  // SIGHUP
  void reload_certificates();  // SIGHUP too: every listener's certificates and keys
  // Routing mode (proxy_routing.cpp).
  void set_up_routing();
  void reload_routes();  // SIGHUP too: the map file
  void start_health_checks();
  asio::awaitable<void> kick_on_loop(Loop& loop,
                                     std::vector<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> due,
                                     std::string reason) const;
  asio::awaitable<void> sweep_idle(Loop& loop);
  asio::awaitable<void> report_refusals();  // the refusal log's sums, once their interval is over

  ProxySettings settings_;
  // Shared by every loop; declared before them, so it outlives their relays.
  std::unique_ptr<guard::Guard> guard_;
  // Routing mode; all null in transparent mode. Before the loops: their relays use them.
  std::unique_ptr<Router> router_;
  std::shared_ptr<asio::ssl::context> backend_tls_;
  std::unique_ptr<RoutingRuntime> routing_;
  std::vector<std::unique_ptr<ListenerRuntime>> runtimes_;
  std::vector<std::unique_ptr<Loop>> loops_;
  // Runs on the first loop: destroyed before the loops (declared after them).
  std::unique_ptr<HealthChecker> health_;
  std::vector<asio::ip::tcp::endpoint> bound_;
  std::atomic<std::size_t> active_{0};
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> draining_{false};
};

}  // namespace imapscope::transport
