// One session's observer for the metrics: times its commands (by tag), follows IDLE
// and the client's family, and reports to Metrics by label index.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proxy/observe/labels.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::observe {

class Metrics;

class SessionMetrics final : public session::Observer {
 public:
  explicit SessionMetrics(Metrics& metrics);
  // Commands never answered count with result "none"; gauges are given back.
  ~SessionMetrics() override;
  SessionMetrics(const SessionMetrics&) = delete;
  SessionMetrics& operator=(const SessionMetrics&) = delete;

  void command(const imap::Command& command) override;
  void command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool local) override;
  void idle_started() override;
  void idle_keepalive() override;
  void literal_bytes(bool from_client, std::uint64_t bytes) override;
  void protocol_error(bool from_client, imap::ErrorCode code) override;
  void client_identified(const identify::ClientInfo& client, bool settled) override;
  void finding(const session::FindingReport& report) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Started {
    std::string tag;
    Clock::time_point at;
    std::size_t command;
    std::string mechanism;  // LOGIN / AUTHENTICATE only
  };

  Metrics& metrics_;
  std::size_t family_;                 // the current guess: the label of its commands
  identify::IdMethod method_ = identify::IdMethod::Unknown;
  bool counted_ = false;               // imapscope_client_identified_total has it
  std::vector<Started> started_;  // commands in flight, in order
  Clock::time_point idle_since_{};
  bool in_idle_ = false;
};

}  // namespace imapscope::observe
