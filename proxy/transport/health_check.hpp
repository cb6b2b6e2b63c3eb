// Routing mode's health checks: every interval, each backend of the pool is checked
// the way a session would use it: connect (plain, TLS or STARTTLS as the backend
// says, verified as the sessions' legs are: transport::connect_upstream), its
// greeting must be "* OK" (or PREAUTH), its capabilities are taken from the greeting's
// [CAPABILITY ...] (or asked, after STARTTLS or when the greeting has none), then
// optionally a test LOGIN that must answer OK, then LOGOUT. The whole check is bounded
// by the timeout; checks run side by side and a backend whose last check still runs
// is not checked again. Outcomes go to the pool (route::Backends::check_result) and
// the metrics; a change of health is logged (event=backend_up / backend_down), a check
// that changes nothing is not.
//
// Sessions never wait for a check: they read the pool's state.
#pragma once

#include <memory>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/ssl/context.hpp>

#include "proxy/route/backends.hpp"
#include "proxy/route/telemetry.hpp"

namespace imapscope::transport {

class HealthChecker {
 public:
  // upstream_tls: for TLS and STARTTLS backends (null: their checks fail, saying so);
  // verify: check their certificates and names. backends and telemetry (nullable)
  // must outlive the executor's event loop.
  HealthChecker(asio::any_io_executor executor, route::Backends& backends, route::HealthSettings settings,
                std::shared_ptr<asio::ssl::context> upstream_tls, bool verify, route::RouteTelemetry* telemetry);
  // stop(); destroy it before the executor's io_context (stop() posts to it).
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the rounds (the first at once). From any thread.
  void start();
  // No new checks or rounds; checks running end within the timeout. From any thread.
  void stop();

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// What one check found (for tests and the log): ok, or why not; the capabilities seen.
struct HealthCheckOutcome {
  bool ok = false;
  std::string error;
  std::string capabilities;
};

// One check of one backend, bounded by settings.timeout as a whole (arguments by
// value: the coroutine outlives the caller's temporaries).
asio::awaitable<HealthCheckOutcome> check_backend(route::Backend backend, route::HealthSettings settings,
                                                  asio::ssl::context* tls, bool verify);

// The capability list of a greeting's "[CAPABILITY ...]" response code, or of a
// "* CAPABILITY ..." line; empty if there is none.
std::string capabilities_of(std::string_view line);

}  // namespace imapscope::transport
