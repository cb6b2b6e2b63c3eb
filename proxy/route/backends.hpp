// The backend pool of routing mode: every backend the proxy may send sessions to,
// with its health (from the health checks), whether an operator drains it, and how
// many sessions it carries. The relay asks admit() before connecting, the health
// checker reports check_result(), the admin API drains and lists, metrics read
// snapshot().
//
// Health follows HAProxy's fall/rise: a backend goes Down after `fall` failed checks
// in a row and Up after `rise` good ones; one that was never up goes Down at its
// first failure (there is nothing to keep giving the benefit of the doubt to).
// Before its first check a backend is Unknown, and sessions may go there: a lookup
// that names a new backend must not wait a check interval.
//
// Backends come from the configuration and the map (configured) or from lookups
// (learnt: the auth service may name any address). Learnt ones are bounded: past
// `max_learnt` they are not tracked, their sessions counted together under the
// metric label "other", so a lookup service can't grow the proxy's memory or the
// metrics' label set without limit.
//
// Sans-IO and thread-safe (every event loop and the admin thread use one pool);
// time is passed in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/route/backend.hpp"

namespace imapscope::route {

enum class BackendHealth : std::uint8_t { Unknown, Up, Down };

// "unknown", "up", "down": the log's and the API's word.
std::string_view backend_health_name(BackendHealth health);

struct BackendStatus {
  Backend backend;
  BackendHealth health = BackendHealth::Unknown;
  bool draining = false;
  std::size_t sessions = 0;
  std::chrono::system_clock::time_point last_check;  // epoch: never checked
  std::string last_error;    // of the last failed check; cleared by a good one
  std::string capabilities;  // of the last good check's greeting (or CAPABILITY)
  bool configured = false;   // from the config or the map (else learnt from a lookup)
};

// What admit() answers: whether a new session may go to a backend.
enum class Admission : std::uint8_t {
  Ok,        // up
  Down,      // its checks fail: NO [UNAVAILABLE]
  Draining,  // an operator drains it: NO [UNAVAILABLE]
  Unknown,   // not checked yet (or not tracked): allowed
};

// An operator's kick (POST /api/kick): a user's sessions or a backend's.
struct KickRequest {
  std::string user;     // the login name as the client gave it; empty: any
  std::string backend;  // a backend's name(); empty: any
  std::string reason;   // the BYE's text
  std::chrono::milliseconds spread{-1};  // BYEs spread over this; -1: the configured default
};

struct HealthSettings {
  std::chrono::milliseconds interval{10'000};  // between the starts of two rounds
  std::chrono::milliseconds timeout{3'000};    // each check, connect to LOGOUT
  unsigned fall = 2;  // failed checks in a row that make an up backend Down
  unsigned rise = 1;  // good checks in a row that make it Up
  // A test login (both set): the check passes only when the backend answers OK.
  std::string login_user, login_password;
};

class Backends {
 public:
  // fall, rise: HealthSettings' (each at least 1).
  explicit Backends(std::size_t max_learnt = 64, unsigned fall = 2, unsigned rise = 1);

  // configured: from the config or the map; otherwise learnt from a lookup (bounded,
  // see above). Adding a known backend again changes nothing but may promote a learnt
  // one to configured.
  void add(const Backend& b, bool configured);
  // May a new session go there? Not tracked: Unknown (allowed).
  Admission admit(const Backend& b) const;
  void session_started(const Backend& b);
  void session_ended(const Backend& b);

  // A health check's outcome; greeting_capabilities: the CAPABILITY list its greeting
  // (or a CAPABILITY command) gave, may be empty. Returns the new health when it
  // changed (worth a log line), nothing otherwise. Unknown backends are ignored.
  std::optional<BackendHealth> check_result(const Backend& b, bool ok, std::string error,
                                            std::string greeting_capabilities,
                                            std::chrono::system_clock::time_point now);
  // false: no such backend.
  bool set_draining(std::string_view name, bool draining);

  // Every tracked backend: configured ones first, in the order they were added.
  std::vector<BackendStatus> snapshot() const;
  std::optional<BackendStatus> find(std::string_view name) const;
  // Sessions on backends past the bound (metric label "other").
  std::size_t untracked_sessions() const;
  // What the health checker checks: every tracked backend.
  std::vector<Backend> to_check() const;

  // What every Up backend's greeting offers (in the order of the first), for the
  // pre-login capability list: only what the proxy can speak before login. AUTH=
  // stays for PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER only (the mechanisms the
  // pre-login phase takes); STARTTLS and LOGINDISABLED go (the session adds them as
  // its listener allows); the rest stays. Empty when no backend is up.
  std::string shared_capabilities() const;
  // The backend's label in metrics: its name, or "other" past the bound.
  std::string metric_label(const Backend& b) const;

 private:
  struct Entry {
    BackendStatus status;
    unsigned failures_in_row = 0;
    unsigned successes_in_row = 0;
    bool ever_up = false;
  };
  Entry* lookup(const std::string& name);
  const Entry* lookup(const std::string& name) const;

  const std::size_t max_learnt_;
  const unsigned fall_, rise_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;                          // in the order added
  std::unordered_map<std::string, std::size_t> index_;  // name -> entries_ index
  std::size_t learnt_ = 0;
  std::size_t untracked_sessions_ = 0;
};

// The capabilities the pre-login phase may announce of one greeting's list (see
// shared_capabilities); exposed for tests.
std::vector<std::string> prelogin_capabilities(std::string_view list);

}  // namespace imapscope::route
