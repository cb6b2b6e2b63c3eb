#include "proxy/observe/route_metrics.hpp"

#include <string>

namespace imapscope::observe {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildHistogram;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// A lookup: the map or the cache answer in microseconds; the auth service in
// milliseconds, up to its timeout (http_timeout_ms, 5 s by default).
const std::vector<double> kLookupBuckets = {0.00001, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,     0.25,   0.5,    1,     2.5,    5,     10,   30};
constexpr std::string_view kSources[] = {"map", "http", "cache"};
constexpr std::string_view kLoginResults[] = {"ok", "no", "failed"};
constexpr route::LookupStatus kStatuses[] = {route::LookupStatus::Routed, route::LookupStatus::Refused,
                                             route::LookupStatus::Unavailable};

// Label values from callers stay in their known sets.
std::string bounded(std::string_view value, std::initializer_list<std::string_view> known) {
  for (auto k : known) {
    if (value == k) return std::string(value);
  }
  return "other";
}

std::string source_label(std::string_view source) { return bounded(source, {"map", "http", "cache"}); }

MetricFamily gauge_family(const std::string& name, const std::string& help) {
  return MetricFamily{name, help, MetricType::Gauge, {}};
}

void add_gauge(MetricFamily& family, const std::string& backend, double value) {
  ClientMetric m;
  m.label.push_back({"backend", backend});
  m.gauge.value = value;
  family.metric.push_back(std::move(m));
}

}  // namespace

std::string_view lookup_status_label(route::LookupStatus status) {
  switch (status) {
    case route::LookupStatus::Routed: return "routed";
    case route::LookupStatus::Refused: return "refused";
    case route::LookupStatus::Unavailable: break;
  }
  return "unavailable";
}

RouteMetrics::RouteMetrics(std::shared_ptr<const route::Backends> backends)
    : backends_(std::move(backends)),
      registry_(std::make_shared<prometheus::Registry>()),
      lookups_(BuildCounter().Name("imapscope_route_lookups_total").Help("Route lookups, by source (map, http, cache) and result (routed, refused, unavailable)").Register(*registry_)),
      lookup_seconds_(BuildHistogram().Name("imapscope_route_lookup_seconds").Help("How long route lookups took, by source").Register(*registry_)),
      logins_(BuildCounter().Name("imapscope_route_logins_total").Help("Logins replayed to a backend, by result (ok; no: the backend's NO or BAD; failed: no backend reached or the replay broke off)").Register(*registry_)),
      checks_(BuildCounter().Name("imapscope_backend_checks_total").Help("Backend health checks, by backend and result (ok, failed)").Register(*registry_)) {
  for (auto source : kSources) {
    for (auto status : kStatuses) {
      lookups_.Add({{"source", std::string(source)}, {"result", std::string(lookup_status_label(status))}});
    }
    lookup_seconds_.Add({{"source", std::string(source)}}, kLookupBuckets);
  }
  for (auto result : kLoginResults) logins_.Add({{"result", std::string(result)}});
}

RouteMetrics::~RouteMetrics() = default;

void RouteMetrics::lookup_done(std::string_view source, route::LookupStatus status, double seconds) {
  const auto label = source_label(source);
  lookups_.Add({{"source", label}, {"result", std::string(lookup_status_label(status))}}).Increment();
  lookup_seconds_.Add({{"source", label}}, kLookupBuckets).Observe(seconds);
}

void RouteMetrics::login_replayed(std::string_view result) {
  logins_.Add({{"result", bounded(result, {"ok", "no", "failed"})}}).Increment();
}

void RouteMetrics::backend_checked(const route::Backend& backend, bool ok) {
  const auto label = backends_ ? backends_->metric_label(backend) : std::string("other");
  checks_.Add({{"backend", label}, {"result", ok ? "ok" : "failed"}}).Increment();
}

std::vector<MetricFamily> RouteMetrics::Collect() const {
  auto sessions = gauge_family("imapscope_backend_sessions", "Sessions relayed to each backend now");
  auto up = gauge_family("imapscope_backend_up", "Whether each backend's health checks pass (1), or fail or haven't run yet (0)");
  auto draining = gauge_family("imapscope_backend_draining", "Whether an operator drains each backend (1: no new sessions)");
  if (backends_) {
    for (const auto& status : backends_->snapshot()) {
      const auto name = status.backend.name();
      // Backends the map or a lookup named since the last scrape: their check series
      // at 0 before the first check, as for those known at start.
      for (const char* result : {"ok", "failed"}) checks_.Add({{"backend", name}, {"result", result}});
      add_gauge(sessions, name, static_cast<double>(status.sessions));
      add_gauge(up, name, status.health == route::BackendHealth::Up ? 1 : 0);
      add_gauge(draining, name, status.draining ? 1 : 0);
    }
    add_gauge(sessions, "other", static_cast<double>(backends_->untracked_sessions()));
  }
  auto out = registry_->Collect();
  out.push_back(std::move(sessions));
  out.push_back(std::move(up));
  out.push_back(std::move(draining));
  return out;
}

}  // namespace imapscope::observe
