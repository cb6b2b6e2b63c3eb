#include "proxy/observe/metrics.hpp"

#include <sstream>

#include <prometheus/text_serializer.h>

#include "proxy/identify/client_info.hpp"
#include "proxy/observe/collectors.hpp"
#include "proxy/observe/session_metrics.hpp"

namespace imapscope::observe {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Command latency, command line complete to tagged answer: from a cached FETCH
// (~100 µs) to a SEARCH of a big mailbox or a slow APPEND (minutes).
const std::vector<double> kCommandBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                             5,      10,      30,     60,    120,    300};
// IDLE lasts up to the client's 29-minute refresh (RFC 2177).
const std::vector<double> kIdleBuckets = {1, 10, 30, 60, 120, 300, 600, 900, 1200, 1500, 1800, 3600};
const std::vector<double> kSessionBuckets = {0.1, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400};
const std::vector<double> kConnectBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,    10, 30};

std::string_view direction_label(bool from_client) { return from_client ? "client_to_server" : "server_to_client"; }

}  // namespace

Metrics::Metrics(std::vector<std::string> families, std::shared_ptr<const policy::RuleStore> rules)
    : registry_(std::make_shared<prometheus::Registry>()),
      families_(std::move(families)),
      sessions_active_(BuildGauge().Name("imapscope_sessions_active").Help("Sessions open now, by listener and TLS mode").Register(*registry_)),
      sessions_total_(BuildCounter().Name("imapscope_sessions_total").Help("Sessions accepted, by listener and TLS mode").Register(*registry_)),
      session_duration_(BuildHistogram().Name("imapscope_session_duration_seconds").Help("Session length, connect to close").Register(*registry_)),
      sessions_closed_(BuildCounter().Name("imapscope_sessions_closed_total").Help("Sessions ended, by close reason").Register(*registry_)),
      commands_(BuildCounter().Name("imapscope_commands_total").Help("Client commands answered, by command, client family and result").Register(*registry_)),
      command_duration_(BuildHistogram().Name("imapscope_command_duration_seconds").Help("Command line complete to tagged answer (IDLE excluded), by command and client family").Register(*registry_)),
      bytes_(BuildCounter().Name("imapscope_bytes_total").Help("Bytes read from each side").Register(*registry_)),
      literal_bytes_(BuildCounter().Name("imapscope_literal_bytes_total").Help("Literal payload bytes (message bodies, APPEND data)").Register(*registry_)),
      tls_handshakes_(BuildCounter().Name("imapscope_tls_handshakes_total").Help("TLS handshakes, by side (client, upstream) and result (ok: full, resumed, failed)").Register(*registry_)),
      tls_sessions_(BuildCounter().Name("imapscope_tls_sessions_total").Help("TLS sessions established, by side and protocol version").Register(*registry_)),
      upstream_connects_(BuildCounter().Name("imapscope_upstream_connects_total").Help("Connections to the upstream up to its greeting, by result").Register(*registry_)),
      auth_(BuildCounter().Name("imapscope_authentications_total").Help("LOGIN and AUTHENTICATE results, by mechanism (never user names)").Register(*registry_)),
      protocol_errors_(BuildCounter().Name("imapscope_protocol_errors_total").Help("Messages refused by a decoder limit, by direction and kind").Register(*registry_)),
      identified_(BuildCounter().Name("imapscope_client_identified_total").Help("Sessions whose client was identified, by family and method").Register(*registry_)),
      client_sessions_(BuildGauge().Name("imapscope_client_sessions_active").Help("Sessions open now, by client family").Register(*registry_)),
      reloads_(BuildCounter().Name("imapscope_reloads_total").Help("Rule reloads (SIGHUP), by result").Register(*registry_)),
      proxy_headers_(BuildCounter().Name("imapscope_proxy_headers_total").Help("PROXY protocol headers on listeners that require one, by result (refused: untrusted, invalid, timed_out, closed)").Register(*registry_)),
      limit_refusals_(BuildCounter().Name("imapscope_limit_refusals_total").Help("Connections refused by a limit before login, and pre-login sessions evicted to make room, by reason (sessions_full, address_full, prelogin_full_evicted)").Register(*registry_)),
      login_failures_(BuildCounter().Name("imapscope_login_failures_total").Help("Logins the server answered NO, by credentials (new, or repeated: the same as the address's last failure)").Register(*registry_)),
      findings_(BuildCounter().Name("imapscope_findings_total").Help("Client behaviours the diagnostics found, by finding and client family (README, Diagnostics)").Register(*registry_)),
      resync_bytes_(BuildCounter().Name("imapscope_full_resync_bytes_total").Help("Bytes the server sent for full flag sweeps of mailboxes (finding full_resync), by client family").Register(*registry_)),
      command_counters_(kCommandLabels * families_.size() * kResultLabels),
      command_histograms_(kCommandLabels * families_.size()),
      client_session_gauges_(families_.size()) {
  login_penalties_ = &BuildCounter().Name("imapscope_login_penalties_total").Help("Logins held back by the login penalty (an earlier failure from the address)").Register(*registry_).Add({});
  login_penalty_seconds_ = &BuildCounter().Name("imapscope_login_penalty_seconds_total").Help("Time logins were held back by the login penalty").Register(*registry_).Add({});
  commands_in_flight_ = &BuildGauge().Name("imapscope_commands_in_flight").Help("Commands sent and not answered yet").Register(*registry_).Add({});
  idle_sessions_ = &BuildGauge().Name("imapscope_idle_sessions").Help("Sessions in IDLE now").Register(*registry_).Add({});
  idle_duration_ = &BuildHistogram().Name("imapscope_idle_duration_seconds").Help("IDLE, from the server's + to its tagged answer").Register(*registry_).Add({}, kIdleBuckets);
  idle_keepalives_ = &BuildCounter().Name("imapscope_idle_keepalives_total").Help("Untagged OK lines from the server during IDLE (keepalives such as '* OK Still here')").Register(*registry_).Add({});
  bytes_from_client_ = &bytes_.Add({{"direction", std::string(direction_label(true))}});
  bytes_from_server_ = &bytes_.Add({{"direction", std::string(direction_label(false))}});
  literal_from_client_ = &literal_bytes_.Add({{"direction", std::string(direction_label(true))}});
  literal_from_server_ = &literal_bytes_.Add({{"direction", std::string(direction_label(false))}});
  upstream_connect_seconds_ = &BuildHistogram().Name("imapscope_upstream_connect_seconds").Help("Connecting to the upstream up to its greeting (TLS included)").Register(*registry_).Add({}, kConnectBuckets);
  for (const char* result : {"ok", "failed"}) {
    reloads_.Add({{"result", result}});
    upstream_connects_.Add({{"result", result}});
    for (const char* side : {"client", "upstream"}) tls_handshakes_.Add({{"side", side}, {"result", result}});
  }
  for (const char* side : {"client", "upstream"}) tls_handshakes_.Add({{"side", side}, {"result", "resumed"}});
  // Without rules the hits family has no series (there is nothing to hit) and
  // imapscope_rules_loaded says 0.
  collectors_.push_back(rule_hits_collector(std::move(rules)));
  collectors_.push_back(process_collector());
  add_known_series();
}

// Prometheus' guidance: series whose label values are known in advance are
// exported at 0 from the start. Commands: every command and result of a client not
// identified yet (where every session starts), and the latency of the commands
// every session sends; other clients' series come with their first command (the
// whole product would be thousands of series).
void Metrics::add_known_series() {
  const std::size_t unknown = families_.index(identify::kUnknownFamily);
  for (std::size_t command = 0; command < kCommandLabels; ++command) {
    if (command >= kVerbCount && command_label(command) == "other") continue;  // "other" comes once
    for (std::size_t result = 0; result < kResultLabels; ++result) {
      command_counter(command, unknown, static_cast<Result>(result));
    }
  }
  for (auto verb : {imap::Verb::Capability, imap::Verb::Login, imap::Verb::Authenticate, imap::Verb::Logout}) {
    command_histogram(command_index(verb, false), unknown);
  }
  for (std::uint8_t r = 0; r <= static_cast<std::uint8_t>(session::CloseReason::PreLoginLogout); ++r) {
    sessions_closed_.Add({{"reason", std::string(session::close_reason_name(static_cast<session::CloseReason>(r)))}});
  }
  for (bool from_client : {true, false}) {
    for (std::uint8_t code = 0; code <= static_cast<std::uint8_t>(imap::ErrorCode::TooManyPendingCommands); ++code) {
      protocol_errors_.Add({{"direction", std::string(direction_label(from_client))},
                            {"kind", std::string(imap::error_code_name(static_cast<imap::ErrorCode>(code)))}});
    }
  }
  for (auto mechanism : mechanism_labels()) {
    for (std::size_t result = 0; result < kResultLabels; ++result) {
      auth_.Add({{"mechanism", std::string(mechanism)}, {"result", std::string(result_label(static_cast<Result>(result)))}});
    }
  }
  for (const char* side : {"client", "upstream"}) {
    for (auto version : tls_version_labels()) tls_sessions_.Add({{"side", side}, {"version", std::string(version)}});
  }
  for (std::size_t family = 0; family < families_.size(); ++family) {
    cached(client_session_gauges_, family, client_sessions_,
           [&]() -> prometheus::Labels { return {{"client", families_.label(family)}}; });
    for (auto method : {identify::IdMethod::Unknown, identify::IdMethod::Heuristic, identify::IdMethod::Id}) {
      identified_.Add({{"client", families_.label(family)}, {"method", std::string(identify::id_method_name(method))}});
    }
    resync_bytes_.Add({{"client", families_.label(family)}});
  }
}

void Metrics::add_listener(std::string_view listener, std::string_view tls) {
  std::lock_guard lock(create_mutex_);
  auto& entry = listeners_[{std::string(listener), std::string(tls)}];
  if (!entry.first) {
    const prometheus::Labels labels{{"listener", std::string(listener)}, {"tls", std::string(tls)}};
    entry = {&sessions_active_.Add(labels), &sessions_total_.Add(labels)};
  }
  session_duration_.Add({{"listener", std::string(listener)}}, kSessionBuckets);
}

void Metrics::add_findings(const std::vector<std::string_view>& names) {
  std::lock_guard lock(create_mutex_);
  for (auto name : names) {
    for (std::size_t family = 0; family < families_.size(); ++family) {
      findings_.Add({{"finding", std::string(name)}, {"client", families_.label(family)}});
    }
  }
}

void Metrics::add_proxy_header_results(const std::vector<std::string_view>& results) {
  std::lock_guard lock(create_mutex_);
  for (auto result : results) proxy_headers_.Add({{"result", std::string(result)}});
}

Metrics::~Metrics() = default;

std::string Metrics::exposition() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collect());
  return out.str();
}

std::vector<prometheus::MetricFamily> Metrics::collect() const {
  auto out = registry_->Collect();
  for (const auto& c : collectors_) {
    auto more = c->Collect();
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

template <typename T, typename MakeLabels>
T& Metrics::cached(std::vector<std::atomic<T*>>& cache, std::size_t index, prometheus::Family<T>& family,
                   MakeLabels&& make_labels, const std::vector<double>* buckets) {
  if (T* found = cache[index].load(std::memory_order_acquire)) return *found;
  std::lock_guard lock(create_mutex_);
  if (T* found = cache[index].load(std::memory_order_acquire)) return *found;
  T* created = nullptr;
  if constexpr (std::is_same_v<T, prometheus::Histogram>) {
    created = &family.Add(make_labels(), *buckets);
  } else {
    created = &family.Add(make_labels());
  }
  cache[index].store(created, std::memory_order_release);
  return *created;
}

prometheus::Counter& Metrics::command_counter(std::size_t command, std::size_t family, Result result) {
  const std::size_t index = (command * families_.size() + family) * kResultLabels + static_cast<std::size_t>(result);
  return cached(command_counters_, index, commands_, [&]() -> prometheus::Labels {
    return {{"command", command_label(command)},
            {"client", families_.label(family)},
            {"result", std::string(result_label(result))}};
  });
}

prometheus::Histogram& Metrics::command_histogram(std::size_t command, std::size_t family) {
  return cached(
      command_histograms_, command * families_.size() + family, command_duration_,
      [&]() -> prometheus::Labels { return {{"command", command_label(command)}, {"client", families_.label(family)}}; },
      &kCommandBuckets);
}

void Metrics::command_done(std::size_t command, std::size_t family, Result result, double seconds, bool timed) {
  command_counter(command, family, result).Increment();
  if (timed) command_histogram(command, family).Observe(seconds);
}

std::unique_ptr<session::Observer> Metrics::session_started(const session::SessionStart& start) {
  std::pair<prometheus::Gauge*, prometheus::Counter*> handles;
  {
    std::lock_guard lock(create_mutex_);
    handles = listeners_[{std::string(start.listener), std::string(start.tls)}];
  }
  if (!handles.first) {
    add_listener(start.listener, start.tls);  // a listener nobody announced (tests)
    std::lock_guard lock(create_mutex_);
    handles = listeners_[{std::string(start.listener), std::string(start.tls)}];
  }
  handles.first->Increment();
  handles.second->Increment();
  return std::make_unique<SessionMetrics>(*this);
}

void Metrics::session_ended(std::string_view listener, std::string_view tls, session::CloseReason reason,
                            double seconds) {
  prometheus::Gauge* active = nullptr;
  prometheus::Counter* closed = nullptr;
  prometheus::Histogram* duration = nullptr;
  {
    std::lock_guard lock(create_mutex_);
    const auto it = listeners_.find({std::string(listener), std::string(tls)});
    if (it != listeners_.end()) active = it->second.first;
    closed = &sessions_closed_.Add({{"reason", std::string(session::close_reason_name(reason))}});
    duration = &session_duration_.Add({{"listener", std::string(listener)}}, kSessionBuckets);
  }
  if (active) active->Decrement();
  closed->Increment();
  duration->Observe(seconds);
}

void Metrics::bytes(bool from_client, std::uint64_t bytes) {
  (from_client ? bytes_from_client_ : bytes_from_server_)->Increment(static_cast<double>(bytes));
}

void Metrics::tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) {
  const std::string side = client_side ? "client" : "upstream";
  std::lock_guard lock(create_mutex_);
  tls_handshakes_.Add({{"side", side}, {"result", !ok ? "failed" : resumed ? "resumed" : "ok"}}).Increment();
  if (ok) tls_sessions_.Add({{"side", side}, {"version", std::string(tls_version_label(version))}}).Increment();
}

void Metrics::upstream_connected(bool ok, double seconds) {
  {
    std::lock_guard lock(create_mutex_);
    upstream_connects_.Add({{"result", ok ? "ok" : "failed"}}).Increment();
  }
  if (ok) upstream_connect_seconds_->Observe(seconds);
}

void Metrics::reload(bool ok) {
  std::lock_guard lock(create_mutex_);
  reloads_.Add({{"result", ok ? "ok" : "failed"}}).Increment();
}

void Metrics::proxy_header(std::string_view outcome) {
  std::lock_guard lock(create_mutex_);
  proxy_headers_.Add({{"result", std::string(outcome)}}).Increment();
}

void Metrics::limit_refusal(std::string_view reason) {
  std::lock_guard lock(create_mutex_);
  limit_refusals_.Add({{"reason", std::string(reason)}}).Increment();
}

void Metrics::login_failed(bool repeated) {
  std::lock_guard lock(create_mutex_);
  login_failures_.Add({{"credentials", repeated ? "repeated" : "new"}}).Increment();
}

void Metrics::login_penalty(double seconds) {
  login_penalties_->Increment();
  login_penalty_seconds_->Increment(seconds);
}

void Metrics::protocol_error(bool from_client, imap::ErrorCode code) {
  std::lock_guard lock(create_mutex_);
  protocol_errors_
      .Add({{"direction", std::string(direction_label(from_client))}, {"kind", std::string(imap::error_code_name(code))}})
      .Increment();
}

void Metrics::authentication(std::string_view mechanism, Result result) {
  std::lock_guard lock(create_mutex_);
  auth_.Add({{"mechanism", std::string(mechanism_label(mechanism))}, {"result", std::string(result_label(result))}})
      .Increment();
}

void Metrics::client_identified(std::size_t family, identify::IdMethod method) {
  std::lock_guard lock(create_mutex_);
  identified_.Add({{"client", families_.label(family)}, {"method", std::string(identify::id_method_name(method))}})
      .Increment();
}

void Metrics::client_session(std::size_t family, bool add) {
  auto& gauge = cached(client_session_gauges_, family, client_sessions_,
                       [&]() -> prometheus::Labels { return {{"client", families_.label(family)}}; });
  add ? gauge.Increment() : gauge.Decrement();
}

void Metrics::finding(std::string_view name, std::size_t family, std::uint64_t bytes) {
  const auto& client = families_.label(family);
  std::lock_guard lock(create_mutex_);
  findings_.Add({{"finding", std::string(name)}, {"client", client}}).Increment();
  if (bytes > 0) resync_bytes_.Add({{"client", client}}).Increment(static_cast<double>(bytes));
}

}  // namespace imapscope::observe
