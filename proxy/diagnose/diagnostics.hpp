// The diagnostics as the proxy sees them: a Telemetry that wraps the others (metrics,
// inspector). Each session's observer passes every event on to theirs and runs the
// session's detectors; a finding is logged (event=finding) and handed to the same
// observers as any event (metrics count it, the inspector shows and writes it).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/diagnose/registry.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::diagnose {

// A finding as the admin API lists it.
struct RecentFinding {
  std::int64_t at_ms = 0;  // unix time
  std::uint64_t session = 0;
  std::string finding, client, user, detail;  // user: as the user_names policy shows it ("" before login)
};

class Diagnostics final : public session::Telemetry {
 public:
  using Clock = std::chrono::steady_clock;
  // inner: who else watches (may be null); clock: for tests.
  Diagnostics(const Options& options, std::shared_ptr<session::Telemetry> inner,
              std::function<Clock::time_point()> clock = &Clock::now);

  std::unique_ptr<session::Observer> session_started(const session::SessionStart& start) override;
  void session_ended(std::string_view listener, std::string_view tls, session::CloseReason reason,
                     double seconds) override;
  void bytes(bool from_client, std::uint64_t bytes) override;
  void tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) override;
  void upstream_connected(bool ok, double seconds) override;
  void reload(bool ok) override;
  void proxy_header(std::string_view outcome) override;
  void limit_refusal(std::string_view reason) override {
    if (inner_) inner_->limit_refusal(reason);
  }
  void login_failed(bool repeated) override {
    if (inner_) inner_->login_failed(repeated);
  }
  void login_penalty(double seconds) override {
    if (inner_) inner_->login_penalty(seconds);
  }

  Registry& registry() { return registry_; }
  // The last findings (at most kRecent), oldest first, and the count per user and
  // finding since start (at most kUsers users).
  static constexpr std::size_t kRecent = 256;
  static constexpr std::size_t kUsers = 10'000;
  std::vector<RecentFinding> recent() const;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_user() const;
  // For the sessions' observers.
  void remember(RecentFinding finding, const std::string& user);

 private:
  Options options_;
  mutable std::mutex mutex_;
  std::deque<RecentFinding> recent_;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_user_;
  Registry registry_;
  std::shared_ptr<session::Telemetry> inner_;
  std::function<Clock::time_point()> clock_;
};

}  // namespace imapscope::diagnose
