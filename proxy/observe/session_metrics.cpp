#include "proxy/observe/session_metrics.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"
#include "proxy/observe/metrics.hpp"

namespace imapscope::observe {

SessionMetrics::SessionMetrics(Metrics& metrics)
    : metrics_(metrics), family_(metrics.families().index(identify::kUnknownFamily)) {
  metrics_.client_session(family_, true);
}

SessionMetrics::~SessionMetrics() {
  for (const auto& s : started_) {
    metrics_.command_left();
    metrics_.command_done(s.command, family_, Result::None, 0, false);
  }
  if (in_idle_) metrics_.idle(false);
  metrics_.client_session(family_, false);
  // A session that ended before identification settled counts as what it was then.
  if (!counted_) metrics_.client_identified(family_, method_);
}

void SessionMetrics::command(const imap::Command& c) {
  Started s{std::string(c.tag), Clock::now(), command_index(c.verb, c.uid), {}};
  if (c.verb == imap::Verb::Login && !c.uid) {
    s.mechanism = "login_command";
  } else if (c.verb == imap::Verb::Authenticate && !c.uid && !c.args.empty()) {
    s.mechanism = imap::ascii_lower(c.args.front().text);  // an atom: PLAIN, XOAUTH2...
  }
  started_.push_back(std::move(s));
  metrics_.command_started();
}

void SessionMetrics::command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool) {
  const auto it = std::find_if(started_.begin(), started_.end(), [&](const Started& s) { return s.tag == tag; });
  const Result result = result_of(status);
  if (it == started_.end()) {
    // A command the observer never saw complete (refused by a limit at its head).
    metrics_.command_done(command_index(verb, uid), family_, result, 0, false);
    return;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - it->at).count();
  const bool idle = verb == imap::Verb::Idle;
  // IDLE's length is the client's choice, not the server's speed: its own histogram.
  metrics_.command_done(it->command, family_, result, seconds, !idle);
  if (idle && in_idle_) {
    metrics_.idle_duration(std::chrono::duration<double>(Clock::now() - idle_since_).count());
    metrics_.idle(false);
    in_idle_ = false;
  }
  if (!it->mechanism.empty()) metrics_.authentication(it->mechanism, result);
  metrics_.command_left();
  started_.erase(it);
  if (started_.empty() && started_.capacity() > 8) std::vector<Started>().swap(started_);
}

void SessionMetrics::idle_started() {
  if (in_idle_) return;
  in_idle_ = true;
  idle_since_ = Clock::now();
  metrics_.idle(true);
}

void SessionMetrics::idle_keepalive() { metrics_.idle_keepalive(); }

void SessionMetrics::literal_bytes(bool from_client, std::uint64_t bytes) { metrics_.literal_bytes(from_client, bytes); }

void SessionMetrics::protocol_error(bool from_client, imap::ErrorCode code) {
  metrics_.protocol_error(from_client, code);
}

void SessionMetrics::client_identified(const identify::ClientInfo& client, bool settled) {
  const std::size_t family = metrics_.families().index(client.family);
  if (family != family_) {
    metrics_.client_session(family_, false);
    metrics_.client_session(family, true);
    family_ = family;
  }
  // Counted once when settled, and again when a later ID changes the answer.
  const bool changed = client.method != method_;
  method_ = client.method;
  if (settled && (!counted_ || changed)) {
    counted_ = true;
    metrics_.client_identified(family, client.method);
  }
}

void SessionMetrics::finding(const session::FindingReport& report) {
  metrics_.finding(report.name, family_, report.bytes);
}

}  // namespace imapscope::observe
