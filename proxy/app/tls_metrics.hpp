// The client leg's certificates on /metrics: when the first one expires, and how
// SIGHUP reloads went, per listener (a bounded set: the config's listeners).
#pragma once

#include <functional>
#include <vector>

#include "proxy/observe/metrics.hpp"
#include "proxy/transport/proxy.hpp"

namespace imapscope::app {

// status: the running proxy's listeners (empty before it runs); asked at each scrape.
void add_tls_metrics(observe::Metrics& metrics, std::function<std::vector<transport::ListenerTlsStatus>()> status);

}  // namespace imapscope::app
