// Routing mode's metrics (docs/metrics.md): lookups by source and result with their
// latency, replayed logins by result, health checks per backend, counted as they
// happen; and, computed at each scrape from the backend pool, sessions per backend
// and whether each is up and drained. The label `backend` is bounded by the pool
// (its configured backends and at most 64 learnt ones, the rest "other").
//
// Added to Metrics as one more collector (Metrics::add_collector), so /metrics shows
// it with everything else; every family is there from start-up, series with known
// label values at 0.
#pragma once

#include <memory>
#include <string_view>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "proxy/route/backends.hpp"
#include "proxy/route/telemetry.hpp"

namespace imapscope::observe {

class RouteMetrics final : public route::RouteTelemetry, public prometheus::Collectable {
 public:
  // backends: the pool whose state the gauges show (null: no backend series).
  explicit RouteMetrics(std::shared_ptr<const route::Backends> backends);
  ~RouteMetrics() override;

  // route::RouteTelemetry
  void lookup_done(std::string_view source, route::LookupStatus status, double seconds) override;
  void login_replayed(std::string_view result) override;
  void backend_checked(const route::Backend& backend, bool ok) override;

  // prometheus::Collectable: the counters, then the pool's gauges.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::shared_ptr<const route::Backends> backends_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& lookups_;
  prometheus::Family<prometheus::Histogram>& lookup_seconds_;
  prometheus::Family<prometheus::Counter>& logins_;
  prometheus::Family<prometheus::Counter>& checks_;
};

// "routed", "refused", "unavailable".
std::string_view lookup_status_label(route::LookupStatus status);

}  // namespace imapscope::observe
