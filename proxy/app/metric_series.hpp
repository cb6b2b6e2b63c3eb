// The label values of metrics that only the configuration knows (listeners, the
// diagnostics' findings, PROXY header results): announced at start so that their
// series are exported at 0 before the first session.
#pragma once

#include "proxy/observe/metrics.hpp"
#include "proxy/transport/settings.hpp"

namespace imapscope::app {

void add_known_series(observe::Metrics& metrics, const transport::ProxySettings& settings);

}  // namespace imapscope::app
