// Metrics computed when Prometheus scrapes, not counted on the way: rule hits (from
// the rule store's counters) and the process's CPU, memory and descriptors.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "proxy/policy/rule_set.hpp"

namespace imapscope::observe {

// imapscope_rule_hits_total{rule}, imapscope_rules_loaded.
std::shared_ptr<prometheus::Collectable> rule_hits_collector(std::shared_ptr<const policy::RuleStore> rules);
// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds (Prometheus' names).
std::shared_ptr<prometheus::Collectable> process_collector();
// Series a function computes at each scrape: for parts of the program observe/
// doesn't know (the inspector's writer and captures).
std::shared_ptr<prometheus::Collectable> function_collector(std::function<std::vector<prometheus::MetricFamily>()> collect);

}  // namespace imapscope::observe
