// Routing mode's metrics: every family at start-up, known series at 0, the pool's
// gauges at each scrape, and labels bounded whatever callers pass.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "proxy/observe/route_metrics.hpp"

namespace imapscope::observe {
namespace {

using namespace std::chrono_literals;

// name -> {"label=value,..." -> value (histograms: their count)}.
std::map<std::string, std::map<std::string, double>> scrape(const RouteMetrics& metrics) {
  std::map<std::string, std::map<std::string, double>> out;
  for (const auto& family : metrics.Collect()) {
    auto& series = out[family.name];
    for (const auto& m : family.metric) {
      std::string key;
      for (const auto& l : m.label) key += l.name + "=" + l.value + ",";
      series[key] = family.type == prometheus::MetricType::Histogram ? static_cast<double>(m.histogram.sample_count)
                    : family.type == prometheus::MetricType::Counter ? m.counter.value
                                                                     : m.gauge.value;
    }
  }
  return out;
}

TEST(RouteMetrics, EveryFamilyAtStartWithKnownSeriesAtZero) {
  auto pool = std::make_shared<route::Backends>();
  pool->add({"127.0.0.1", 1143}, true);
  RouteMetrics metrics(pool);
  auto s = scrape(metrics);
  for (const char* family : {"imapscope_route_lookups_total", "imapscope_route_lookup_seconds",
                             "imapscope_route_logins_total", "imapscope_backend_checks_total",
                             "imapscope_backend_sessions", "imapscope_backend_up", "imapscope_backend_draining"}) {
    ASSERT_TRUE(s.count(family)) << family;
  }
  EXPECT_EQ(s["imapscope_route_lookups_total"].size(), 9U);
  EXPECT_EQ(s["imapscope_route_lookups_total"]["result=unavailable,source=http,"], 0);
  EXPECT_EQ(s["imapscope_route_lookup_seconds"].size(), 3U);
  EXPECT_EQ(s["imapscope_route_logins_total"].size(), 3U);
  EXPECT_EQ(s["imapscope_backend_checks_total"]["backend=127.0.0.1:1143,result=failed,"], 0);
  EXPECT_EQ(s["imapscope_backend_up"]["backend=127.0.0.1:1143,"], 0);
  EXPECT_EQ(s["imapscope_backend_sessions"]["backend=other,"], 0);
}

TEST(RouteMetrics, CountsWhatHappens) {
  auto pool = std::make_shared<route::Backends>(1, 1, 1);
  const route::Backend one{"127.0.0.1", 1143}, two{"127.0.0.1", 2143}, far{"10.0.0.9", 143};
  pool->add(one, true);
  pool->add(two, false);
  pool->add(far, false);  // past the bound of 1 learnt
  RouteMetrics metrics(pool);
  metrics.lookup_done("http", route::LookupStatus::Routed, 0.004);
  metrics.lookup_done("cache", route::LookupStatus::Routed, 0.00001);
  metrics.lookup_done("map", route::LookupStatus::Refused, 0.00002);
  metrics.lookup_done("ldap", route::LookupStatus::Unavailable, 1);  // not a source: "other"
  metrics.login_replayed("ok");
  metrics.login_replayed("no");
  metrics.login_replayed("whatever");
  metrics.backend_checked(one, true);
  metrics.backend_checked(far, false);
  pool->check_result(one, true, "", "IMAP4rev1", std::chrono::system_clock::now());
  pool->set_draining(two.name(), true);
  pool->session_started(one);
  pool->session_started(one);
  pool->session_started(far);
  auto s = scrape(metrics);
  EXPECT_EQ(s["imapscope_route_lookups_total"]["result=routed,source=http,"], 1);
  EXPECT_EQ(s["imapscope_route_lookups_total"]["result=routed,source=cache,"], 1);
  EXPECT_EQ(s["imapscope_route_lookups_total"]["result=refused,source=map,"], 1);
  EXPECT_EQ(s["imapscope_route_lookups_total"]["result=unavailable,source=other,"], 1);
  EXPECT_EQ(s["imapscope_route_lookup_seconds"]["source=http,"], 1);
  EXPECT_EQ(s["imapscope_route_logins_total"]["result=ok,"], 1);
  EXPECT_EQ(s["imapscope_route_logins_total"]["result=no,"], 1);
  EXPECT_EQ(s["imapscope_route_logins_total"]["result=other,"], 1);
  EXPECT_EQ(s["imapscope_backend_checks_total"]["backend=127.0.0.1:1143,result=ok,"], 1);
  EXPECT_EQ(s["imapscope_backend_checks_total"]["backend=other,result=failed,"], 1);
  EXPECT_EQ(s["imapscope_backend_checks_total"]["backend=127.0.0.1:2143,result=ok,"], 0);
  EXPECT_EQ(s["imapscope_backend_up"]["backend=127.0.0.1:1143,"], 1);
  EXPECT_EQ(s["imapscope_backend_up"]["backend=127.0.0.1:2143,"], 0);
  EXPECT_EQ(s["imapscope_backend_draining"]["backend=127.0.0.1:2143,"], 1);
  EXPECT_EQ(s["imapscope_backend_sessions"]["backend=127.0.0.1:1143,"], 2);
  EXPECT_EQ(s["imapscope_backend_sessions"]["backend=other,"], 1);
  EXPECT_EQ(s["imapscope_backend_sessions"].size(), 3U);  // two tracked and "other"
}

TEST(RouteMetrics, WithoutAPoolOnlyTheCounters) {
  RouteMetrics metrics(nullptr);
  metrics.backend_checked({"127.0.0.1", 1143}, true);
  auto s = scrape(metrics);
  EXPECT_TRUE(s["imapscope_backend_sessions"].empty());
  EXPECT_EQ(s["imapscope_backend_checks_total"]["backend=other,result=ok,"], 1);
}

}  // namespace
}  // namespace imapscope::observe
