#include "proxy/app/metric_series.hpp"

#include <string_view>
#include <vector>

#include "proxy/diagnose/findings.hpp"
#include "proxy/transport/client_address.hpp"

namespace imapscope::app {

void add_known_series(observe::Metrics& metrics, const transport::ProxySettings& settings) {
  for (const auto& listener : settings.listeners) metrics.add_listener(listener.name, transport::listener_tls_mode(listener));
  std::vector<std::string_view> findings;
  for (std::size_t kind = 0; kind < diagnose::kFindingKinds; ++kind) {
    findings.push_back(diagnose::finding_text(static_cast<diagnose::FindingKind>(kind)).name);
  }
  metrics.add_findings(findings);
  std::vector<std::string_view> outcomes;
  for (auto outcome : {transport::ProxyHeaderOutcome::Accepted, transport::ProxyHeaderOutcome::Local,
                       transport::ProxyHeaderOutcome::Untrusted, transport::ProxyHeaderOutcome::Invalid,
                       transport::ProxyHeaderOutcome::TimedOut, transport::ProxyHeaderOutcome::Closed}) {
    outcomes.push_back(transport::proxy_header_outcome_name(outcome));
  }
  metrics.add_proxy_header_results(outcomes);
}

}  // namespace imapscope::app
