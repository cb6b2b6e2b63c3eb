// What routing mode tells the metrics (observe/ implements it): lookups by source and
// result with their latency, replayed logins by result, health checks. Called from
// every event loop: implementations are thread-safe.
#pragma once

#include <string_view>

#include "proxy/route/backend.hpp"

namespace imapscope::route {

class RouteTelemetry {
 public:
  virtual ~RouteTelemetry() = default;
  // source: "map", "http" or "cache"; seconds: how long the answer took.
  virtual void lookup_done(std::string_view source, LookupStatus status, double seconds) = 0;
  // result: "ok" (the backend's OK), "no" (its NO or BAD), "failed" (no backend reached
  // or the replay broke off).
  virtual void login_replayed(std::string_view result) = 0;
  virtual void backend_checked(const Backend& backend, bool ok) = 0;
};

}  // namespace imapscope::route
