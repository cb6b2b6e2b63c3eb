// The guard before login: one place that the listener asks before it spends anything
// on a new client (Admissions), and the session asks before a login goes to the
// server (LoginPenalty), with the refusal log that keeps both from flooding the log.
// Shared by every event loop of the process (each part locks for itself); knows
// nothing of sockets, clocks or IMAP. The routing mode's pre-login phase asks the
// same guard.
#pragma once

#include <chrono>
#include <cstddef>

#include "proxy/guard/admissions.hpp"
#include "proxy/guard/credential_digest.hpp"
#include "proxy/guard/login_penalty.hpp"
#include "proxy/guard/refusal_log.hpp"

namespace imapscope::guard {

struct GuardSettings {
  SessionLimits limits;
  PenaltySettings penalty;
  std::chrono::seconds log_interval{60};  // refusals: one line per address and reason per interval
  std::size_t log_addresses = 4'096;      // addresses the refusal log tells apart
};

// The settings a proxy starts from: the totals left at 0, for the caller to derive
// from the descriptor limit (sessions_for_descriptors) once it knows it.
inline GuardSettings settings_with_derived_totals() {
  GuardSettings g;
  g.limits.max_sessions = 0;
  g.limits.max_prelogin = 0;
  return g;
}

class Guard {
 public:
  explicit Guard(const GuardSettings& settings)
      : admissions_(settings.limits),
        penalty_(settings.penalty),
        refusals_(settings.log_interval, settings.log_addresses) {}

  Admissions& admissions() { return admissions_; }
  LoginPenalty& penalty() { return penalty_; }
  RefusalLog& refusals() { return refusals_; }
  const CredentialDigest& digest() const { return digest_; }

 private:
  Admissions admissions_;
  LoginPenalty penalty_;
  RefusalLog refusals_;
  CredentialDigest digest_;
};

}  // namespace imapscope::guard
