// Metrics from real sessions (session::Session with its observer): what is counted,
// and that label values stay bounded whatever clients send.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "proxy/identify/signatures.hpp"
#include "proxy/observe/metrics.hpp"
#include "proxy/session/session.hpp"
#include "tests/support/observed_session.hpp"

namespace imapscope::observe {
namespace {

// Series of one metric family: label sets -> value (counter/gauge, or histogram count).
std::map<std::string, double> series(const Metrics& metrics, const std::string& name) {
  std::map<std::string, double> out;
  for (const auto& family : metrics.collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      std::string key;
      for (const auto& l : m.label) key += l.name + "=" + l.value + ",";
      out[key] = family.type == prometheus::MetricType::Histogram ? static_cast<double>(m.histogram.sample_count)
                 : family.type == prometheus::MetricType::Counter ? m.counter.value
                                                                  : m.gauge.value;
    }
  }
  return out;
}

std::set<std::string> label_values(const Metrics& metrics, const std::string& name, const std::string& label) {
  std::set<std::string> out;
  for (const auto& family : metrics.collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      for (const auto& l : m.label) {
        if (l.name == label) out.insert(l.value);
      }
    }
  }
  return out;
}

using Observed = imapscope::testing::ObservedSession;

Metrics make_metrics() { return Metrics(identify::builtin_signatures().families, nullptr); }

TEST(Metrics, CountsCommandsByCommandClientAndResult) {
  Metrics metrics = make_metrics();
  {
    Observed run(metrics, 1);
    run.server("* OK ready\r\n");
    run.client("a1 ID (\"name\" \"Thunderbird\" \"version\" \"128.0\")\r\n");
    run.server("* ID NIL\r\na1 OK ID done\r\n");
    run.client("a2 LOGIN bob secret\r\n");
    run.server("a2 OK Logged in\r\n");
    run.client("a3 SELECT INBOX\r\na4 UID FETCH 1:* (FLAGS)\r\na5 STORE 1 +FLAGS (\\Seen)\r\n");
    run.server("a3 OK done\r\na4 OK done\r\na5 NO [CANNOT] read-only\r\n");
    run.client("a6 IDLE\r\n");
    run.server("+ idling\r\n* OK Still here\r\n* OK Still here\r\n");
    EXPECT_EQ(series(metrics, "imapscope_idle_sessions")[""], 1);
    run.client("DONE\r\n");
    run.server("a6 OK Idle completed\r\n");
    run.client("a7 NOOP\r\n");  // never answered: counted with result "none" when the session ends
    EXPECT_EQ(series(metrics, "imapscope_commands_in_flight")[""], 1);
  }
  metrics.session_ended("imap", "none", session::CloseReason::ClientClosed, 1.5);
  const auto commands = series(metrics, "imapscope_commands_total");
  EXPECT_EQ(commands.at("client=thunderbird,command=select,result=ok,"), 1);
  EXPECT_EQ(commands.at("client=thunderbird,command=uid_fetch,result=ok,"), 1);
  EXPECT_EQ(commands.at("client=thunderbird,command=store,result=no,"), 1);
  EXPECT_EQ(commands.at("client=thunderbird,command=noop,result=none,"), 1);
  EXPECT_EQ(commands.at("client=thunderbird,command=idle,result=ok,"), 1);
  const auto latency = series(metrics, "imapscope_command_duration_seconds");
  EXPECT_EQ(latency.at("client=thunderbird,command=select,"), 1);
  EXPECT_EQ(latency.count("client=thunderbird,command=idle,"), 0u);  // IDLE has its own histogram
  EXPECT_EQ(series(metrics, "imapscope_idle_duration_seconds")[""], 1);
  EXPECT_EQ(series(metrics, "imapscope_idle_keepalives_total")[""], 2);
  EXPECT_EQ(series(metrics, "imapscope_idle_sessions")[""], 0);
  EXPECT_EQ(series(metrics, "imapscope_commands_in_flight")[""], 0);
  EXPECT_EQ(series(metrics, "imapscope_authentications_total").at("mechanism=login_command,result=ok,"), 1);
  EXPECT_EQ(series(metrics, "imapscope_client_identified_total").at("client=thunderbird,method=id,"), 1);
  EXPECT_EQ(series(metrics, "imapscope_client_sessions_active").at("client=thunderbird,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_sessions_active").at("listener=imap,tls=none,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_sessions_total").at("listener=imap,tls=none,"), 1);
  EXPECT_EQ(series(metrics, "imapscope_sessions_closed_total").at("reason=client_closed,"), 1);
}

std::size_t series_count(const Metrics& metrics) {
  std::size_t total = 0;
  for (const auto& family : metrics.collect()) total += family.metric.size();
  return total;
}

TEST(Metrics, OddNamesAndStringsCreateNoNewSeries) {
  Metrics metrics = make_metrics();
  const auto commands_at_start = label_values(metrics, "imapscope_commands_total", "command");
  const auto before = series_count(metrics);
  for (int i = 0; i < 300; ++i) {
    Observed run(metrics, 1);
    const auto n = std::to_string(i);
    run.server("* OK ready\r\n");
    run.client("t1 ID (\"name\" \"Mailer" + n + "\" \"version\" \"" + n + "\")\r\n");
    run.server("t1 OK ID done\r\n");
    run.client("t2 XCMD" + n + " arg\r\nt3 UID XUID" + n + "\r\nt4 AUTHENTICATE XMECH" + n + "\r\n");
    run.server("t2 BAD unknown\r\nt3 BAD unknown\r\nt4 NO unsupported\r\n");
    run.client("t5 " + std::string(300, 'Q') + n + "\r\n");
    run.server("t5 BAD unknown\r\n");
    metrics.session_ended("imap", "none", session::CloseReason::ClientClosed, 0.1);
  }
  EXPECT_EQ(label_values(metrics, "imapscope_commands_total", "command"), commands_at_start);
  EXPECT_EQ(label_values(metrics, "imapscope_commands_total", "client"), (std::set<std::string>{"other", "unknown"}));
  EXPECT_EQ(series(metrics, "imapscope_commands_total").at("client=other,command=other,result=bad,"), 900);
  EXPECT_EQ(series(metrics, "imapscope_authentications_total").at("mechanism=other,result=no,"), 300);
  // Every series, all families: a bounded handful more than at start, not one per session.
  EXPECT_LT(series_count(metrics), before + 60);
}

// Label values known in advance are exported at 0 from the start (Prometheus'
// guidance): dashboards show 0, alerts tell "none" from "absent".
TEST(Metrics, KnownLabelValuesAreExportedAtZeroFromTheStart) {
  Metrics metrics = make_metrics();
  metrics.add_listener("imaps", "implicit");
  metrics.add_findings({"full_resync", "idle_churn"});
  metrics.add_proxy_header_results({"accepted", "invalid"});
  const auto families = identify::builtin_signatures().families;
  for (const auto& [name, expected] : std::map<std::string, std::size_t>{
           {"imapscope_sessions_active", 1},
           {"imapscope_sessions_total", 1},
           {"imapscope_session_duration_seconds", 1},
           {"imapscope_sessions_closed_total", 17},  // every close reason
           {"imapscope_protocol_errors_total", 12},  // 2 directions x 6 kinds
           {"imapscope_authentications_total", 16 * 4},
           {"imapscope_tls_sessions_total", 2 * 5},
           {"imapscope_proxy_headers_total", 2},
           {"imapscope_reloads_total", 2},
           {"imapscope_upstream_connects_total", 2},
           {"imapscope_rules_loaded", 1}}) {
    const auto found = series(metrics, name);
    EXPECT_EQ(found.size(), expected) << name;
    for (const auto& [labels, value] : found) EXPECT_EQ(value, 0) << name << " " << labels;
  }
  EXPECT_EQ(series(metrics, "imapscope_sessions_closed_total").at("reason=server_error,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_protocol_errors_total").at("direction=client_to_server,kind=line_too_long,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_findings_total").at("client=thunderbird,finding=full_resync,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_full_resync_bytes_total").at("client=outlook,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_client_sessions_active").size(), families.size());
  EXPECT_EQ(series(metrics, "imapscope_client_identified_total").at("client=mutt,method=id,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_commands_total").at("client=unknown,command=uid_fetch,result=no,"), 0);
  EXPECT_EQ(series(metrics, "imapscope_command_duration_seconds").at("client=unknown,command=login,"), 0);
  // Nothing at all in a family would read "absent" to an alert: every family has series.
  for (const auto& family : metrics.collect()) {
    if (family.name == "imapscope_rule_hits_total") continue;  // no rules: nothing to hit
    EXPECT_FALSE(family.metric.empty()) << family.name;
  }
  // A session on the listener moves the series that were there (no duplicate).
  metrics.session_started(session::SessionStart{"imaps", "implicit", 1, "127.0.0.1:1"});
  EXPECT_EQ(series(metrics, "imapscope_sessions_total").at("listener=imaps,tls=implicit,"), 1);
  EXPECT_EQ(series(metrics, "imapscope_sessions_total").size(), 1u);
}

TEST(Labels, AreBoundedSets) {
  EXPECT_EQ(command_label(command_index(imap::Verb::Fetch, true)), "uid_fetch");
  EXPECT_EQ(command_label(command_index(imap::Verb::Select, true)), "other");  // no UID SELECT
  EXPECT_EQ(command_label(command_index(imap::Verb::Other, false)), "other");
  EXPECT_EQ(mechanism_label("SCRAM-SHA-256"), "scram-sha-256");
  EXPECT_EQ(mechanism_label("X-MADE-UP"), "other");
  EXPECT_EQ(tls_version_label("TLSv1.3"), "TLSv1.3");
  EXPECT_EQ(tls_version_label("SSLv3"), "other");
  FamilyLabels families({"thunderbird", "other", "unknown"});
  EXPECT_EQ(families.label(families.index("thunderbird")), "thunderbird");
  EXPECT_EQ(families.label(families.index("Mailer 2000")), "other");
}

}  // namespace
}  // namespace imapscope::observe
