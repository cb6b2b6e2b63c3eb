#include "proxy/observe/collectors.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace imapscope::observe {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily single(const std::string& name, const std::string& help, MetricType type, double value) {
  MetricFamily f{name, help, type, {}};
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

class RuleHits final : public prometheus::Collectable {
 public:
  explicit RuleHits(std::shared_ptr<const policy::RuleStore> rules) : rules_(std::move(rules)) {}
  std::vector<MetricFamily> Collect() const override {
    MetricFamily hits{"imapscope_rule_hits_total", "Messages a rewrite rule matched, by rule name",
                      MetricType::Counter, {}};
    if (!rules_) return {hits, single("imapscope_rules_loaded", "Rules in force", MetricType::Gauge, 0)};
    for (const auto& [name, count] : rules_->hit_counts()) {
      ClientMetric m;
      m.label.push_back({"rule", name});
      m.counter.value = static_cast<double>(count);
      hits.metric.push_back(m);
    }
    return {hits, single("imapscope_rules_loaded", "Rules in force", MetricType::Gauge,
                         static_cast<double>(rules_->current()->rules.size()))};
  }

 private:
  std::shared_ptr<const policy::RuleStore> rules_;
};

class Process final : public prometheus::Collectable {
 public:
  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    // /proc/self/stat: fields after the command name "(...)"; utime is field 14.
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      std::vector<std::string> f;
      for (std::string field; rest >> field;) f.push_back(field);
      // f[0] is field 3 (state): field n is f[n - 3].
      if (f.size() > 21) {
        const double cpu = (std::stod(f[11]) + std::stod(f[12])) / tick;
        out.push_back(single("process_cpu_seconds_total", "User and system CPU time", MetricType::Counter, cpu));
        out.push_back(single("process_virtual_memory_bytes", "Virtual memory size", MetricType::Gauge, std::stod(f[20])));
        out.push_back(single("process_resident_memory_bytes", "Resident memory size", MetricType::Gauge,
                             std::stod(f[21]) * page));
        std::ifstream uptime_file("/proc/stat");
        for (std::string key; uptime_file >> key;) {
          if (key == "btime") {
            double boot = 0;
            uptime_file >> boot;
            out.push_back(single("process_start_time_seconds", "Start time since the Unix epoch", MetricType::Gauge,
                                 boot + std::stod(f[19]) / tick));
            break;
          }
        }
      }
    }
    std::error_code ec;
    double fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
         it.increment(ec)) {
      ++fds;
    }
    out.push_back(single("process_open_fds", "Open file descriptors", MetricType::Gauge, fds));
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      out.push_back(single("process_max_fds", "Limit of open file descriptors", MetricType::Gauge,
                           static_cast<double>(limit.rlim_cur)));
    }
    return out;
  }
};

}  // namespace

std::shared_ptr<prometheus::Collectable> rule_hits_collector(std::shared_ptr<const policy::RuleStore> rules) {
  return std::make_shared<RuleHits>(std::move(rules));
}

std::shared_ptr<prometheus::Collectable> process_collector() { return std::make_shared<Process>(); }

namespace {

class FunctionCollector final : public prometheus::Collectable {
 public:
  explicit FunctionCollector(std::function<std::vector<MetricFamily>()> collect) : collect_(std::move(collect)) {}
  std::vector<MetricFamily> Collect() const override { return collect_(); }

 private:
  std::function<std::vector<MetricFamily>()> collect_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> function_collector(std::function<std::vector<MetricFamily>()> collect) {
  return std::make_shared<FunctionCollector>(std::move(collect));
}

}  // namespace imapscope::observe
