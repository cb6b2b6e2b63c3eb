// Prometheus metrics (prometheus-cpp): what every session and the proxy report,
// served on the admin address (/metrics, app/admin_api). Names and labels are a
// public interface (dashboards/ and users' queries depend on them); every label
// value comes from a bounded set
// (labels.hpp, listener names from the config, rule names from the rule files).
//
// Hot path: a command's counter and histogram are found by index in arrays of
// handles (created on first use under a lock), never by building label maps per
// message; bytes are counted per read.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "proxy/observe/labels.hpp"
#include "proxy/policy/rule_set.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::observe {

class Metrics final : public session::Telemetry {
 public:
  // families: the client families of the signatures; rules: for rule hit counters
  // (may be null).
  Metrics(std::vector<std::string> families, std::shared_ptr<const policy::RuleStore> rules);
  ~Metrics() override;

  // Label values known once the configuration is read: their series exist, at 0,
  // from start-up, so that dashboards and alerts tell "none yet" from "absent".
  void add_listener(std::string_view listener, std::string_view tls);
  void add_findings(const std::vector<std::string_view>& names);
  void add_proxy_header_results(const std::vector<std::string_view>& results);

  // More series computed when scraped (e.g. the transcript writer's counts); before
  // the first scrape only.
  void add_collector(std::shared_ptr<prometheus::Collectable> collector) { collectors_.push_back(std::move(collector)); }
  // Everything /metrics shows (registry, rule hits, process), and as the text
  // exposition format.
  std::vector<prometheus::MetricFamily> collect() const;
  std::string exposition() const;

  // session::Telemetry
  std::unique_ptr<session::Observer> session_started(const session::SessionStart& start) override;
  void session_ended(std::string_view listener, std::string_view tls, session::CloseReason reason,
                     double seconds) override;
  void bytes(bool from_client, std::uint64_t bytes) override;
  void tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) override;
  void upstream_connected(bool ok, double seconds) override;
  void reload(bool ok) override;
  void proxy_header(std::string_view outcome) override;
  void limit_refusal(std::string_view reason) override;
  void login_failed(bool repeated) override;
  void login_penalty(double seconds) override;

  // For SessionMetrics.
  const FamilyLabels& families() const { return families_; }
  void command_done(std::size_t command, std::size_t family, Result result, double seconds, bool timed);
  void command_started() { commands_in_flight_->Increment(); }
  void command_left() { commands_in_flight_->Decrement(); }
  void idle(bool started) { started ? idle_sessions_->Increment() : idle_sessions_->Decrement(); }
  void idle_duration(double seconds) { idle_duration_->Observe(seconds); }
  void idle_keepalive() { idle_keepalives_->Increment(); }
  void literal_bytes(bool from_client, std::uint64_t bytes) {
    (from_client ? literal_from_client_ : literal_from_server_)->Increment(static_cast<double>(bytes));
  }
  void protocol_error(bool from_client, imap::ErrorCode code);
  void authentication(std::string_view mechanism, Result result);
  void client_identified(std::size_t family, identify::IdMethod method);
  void client_session(std::size_t family, bool add);
  // A diagnostics finding (rare: series looked up by labels, created on first use).
  void finding(std::string_view name, std::size_t family, std::uint64_t bytes);

 private:
  prometheus::Counter& command_counter(std::size_t command, std::size_t family, Result result);
  prometheus::Histogram& command_histogram(std::size_t command, std::size_t family);
  // The series at cache[index], created with make_labels() on first use only: the
  // hot path builds no label map.
  void add_known_series();
  template <typename T, typename MakeLabels>
  T& cached(std::vector<std::atomic<T*>>& cache, std::size_t index, prometheus::Family<T>& family,
            MakeLabels&& make_labels, const std::vector<double>* buckets = nullptr);

  std::shared_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors_;  // rule hits, process
  FamilyLabels families_;
  std::mutex create_mutex_;  // creating a series; reading the caches takes no lock

  prometheus::Family<prometheus::Gauge>& sessions_active_;
  prometheus::Family<prometheus::Counter>& sessions_total_;
  prometheus::Family<prometheus::Histogram>& session_duration_;
  prometheus::Family<prometheus::Counter>& sessions_closed_;
  prometheus::Family<prometheus::Counter>& commands_;
  prometheus::Family<prometheus::Histogram>& command_duration_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Counter>& literal_bytes_;
  prometheus::Family<prometheus::Counter>& tls_handshakes_;
  prometheus::Family<prometheus::Counter>& tls_sessions_;
  prometheus::Family<prometheus::Counter>& upstream_connects_;
  prometheus::Family<prometheus::Counter>& auth_;
  prometheus::Family<prometheus::Counter>& protocol_errors_;
  prometheus::Family<prometheus::Counter>& identified_;
  prometheus::Family<prometheus::Gauge>& client_sessions_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Family<prometheus::Counter>& proxy_headers_;
  prometheus::Family<prometheus::Counter>& limit_refusals_;
  prometheus::Family<prometheus::Counter>& login_failures_;
  prometheus::Counter* login_penalties_ = nullptr;
  prometheus::Counter* login_penalty_seconds_ = nullptr;
  prometheus::Family<prometheus::Counter>& findings_;
  prometheus::Family<prometheus::Counter>& resync_bytes_;

  prometheus::Gauge* commands_in_flight_;
  prometheus::Gauge* idle_sessions_;
  prometheus::Histogram* idle_duration_;
  prometheus::Counter* idle_keepalives_;
  prometheus::Counter* bytes_from_client_;
  prometheus::Counter* bytes_from_server_;
  prometheus::Counter* literal_from_client_;
  prometheus::Counter* literal_from_server_;
  prometheus::Histogram* upstream_connect_seconds_;

  std::vector<std::atomic<prometheus::Counter*>> command_counters_;    // [command][family][result]
  std::vector<std::atomic<prometheus::Histogram*>> command_histograms_;  // [command][family]
  std::vector<std::atomic<prometheus::Gauge*>> client_session_gauges_;   // [family]
  // Per listener and TLS mode (a handful): looked up once per session.
  std::map<std::pair<std::string, std::string>, std::pair<prometheus::Gauge*, prometheus::Counter*>> listeners_;
};

}  // namespace imapscope::observe
