#include "proxy/app/tls_metrics.hpp"

#include "proxy/observe/collectors.hpp"

namespace imapscope::app {

void add_tls_metrics(observe::Metrics& metrics, std::function<std::vector<transport::ListenerTlsStatus>()> status) {
  metrics.add_collector(observe::function_collector([status = std::move(status)] {
    using prometheus::ClientMetric;
    using prometheus::MetricFamily;
    using prometheus::MetricType;
    MetricFamily expiry{"imapscope_tls_certificate_expiry_timestamp_seconds",
                        "When the listener's certificate that expires first expires (notAfter, Unix time)",
                        MetricType::Gauge, {}};
    MetricFamily reloads{"imapscope_tls_reloads_total",
                         "Certificate reloads (SIGHUP) by listener and result; failed: the previous ones stay",
                         MetricType::Counter, {}};
    for (const auto& listener : status()) {
      ClientMetric m;
      m.label.push_back({"listener", listener.listener});
      m.gauge.value = static_cast<double>(listener.earliest_expiry);
      expiry.metric.push_back(m);
      for (const auto& [result, value] : {std::pair{"ok", listener.reloads_ok}, {"failed", listener.reloads_failed}}) {
        ClientMetric r;
        r.label = {{"listener", listener.listener}, {"result", result}};
        r.counter.value = static_cast<double>(value);
        reloads.metric.push_back(r);
      }
    }
    return std::vector<MetricFamily>{std::move(expiry), std::move(reloads)};
  }));
}

}  // namespace imapscope::app
