// What the diagnostics know across sessions (thread-safe: every event loop asks): the
// last UIDVALIDITY per user and mailbox (kept in a file across restarts), full
// sweeps per user and mailbox, concurrent connections and IDLE folders per user,
// failed logins per address. Users and mailboxes are kept as HMAC-SHA256 keys (under
// the label key) in the file: it can tell "the same" from "different", not who.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "proxy/diagnose/thresholds.hpp"

namespace imapscope::diagnose {

class Registry {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Registry(const Options& options);
  ~Registry();  // saves the state file
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  const Thresholds& thresholds() const { return options_.thresholds; }

  // Remembers value; returns the one remembered before when it differs.
  std::optional<std::uint32_t> uidvalidity(std::string_view user, std::string_view mailbox, std::uint32_t value);
  // A full sweep of a user's mailbox now, of `messages` messages that cost `bytes`.
  struct Resweep {
    std::optional<Clock::duration> since;  // the previous sweep, if within the repeat window
    std::uint32_t sweeps = 0;              // sweeps of it within the window, this one included
    std::uint64_t bytes = 0;               // ... after the first: what was fetched again
    bool report = false;                   // the first to reach the thresholds in the window
  };
  Resweep swept(std::string_view user, std::string_view mailbox, std::uint32_t messages, std::uint64_t bytes,
                Clock::time_point now);
  // Logged-in sessions per user; connected returns the count with this one.
  std::uint32_t user_connected(std::string_view user);
  void user_disconnected(std::string_view user);
  // Sessions of a user in IDLE, by folder: returns the distinct folders in IDLE now.
  std::uint32_t idle_on(std::string_view user, std::uint64_t session, std::string_view mailbox);
  void idle_off(std::string_view user, std::uint64_t session);
  // A failed login from address: the failures within the window, and whether this
  // one is the first to reach the threshold in the window (report once).
  std::pair<std::uint32_t, bool> login_failed(std::string_view address, Clock::time_point now);

  // Writes the state file now if it changed (also done at most every few seconds
  // after a change, and on destruction). Failures are logged, never fatal.
  void save();

 private:
  struct Remembered {
    std::uint32_t uidvalidity = 0;
    std::int64_t seen = 0;  // unix seconds: the oldest are forgotten first
  };
  struct Sweeps {
    std::deque<std::pair<Clock::time_point, std::uint64_t>> at;  // within the window, bounded
    Clock::time_point reported{};
  };
  struct Failures {
    std::deque<Clock::time_point> at;
    Clock::time_point reported{};
  };
  void load();
  void maybe_save_locked(std::unique_lock<std::mutex>& lock);

  Options options_;
  std::mutex mutex_;
  std::unordered_map<std::string, Remembered> uidvalidity_;  // key: HMAC of user NUL mailbox
  bool dirty_ = false;
  Clock::time_point saved_at_{};
  std::map<std::string, Sweeps, std::less<>> sweeps_;  // same key
  std::map<std::string, std::uint32_t, std::less<>> connections_;
  std::map<std::string, std::map<std::uint64_t, std::string>, std::less<>> idling_;  // user -> session -> folder
  std::map<std::string, Failures, std::less<>> failures_;
};

// "INBOX" in any case is INBOX (RFC 9051 §5.1); other names as sent.
std::string mailbox_key(std::string_view mailbox);

}  // namespace imapscope::diagnose
