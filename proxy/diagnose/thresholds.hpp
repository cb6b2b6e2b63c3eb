// When a behaviour counts as a finding: configuration ("diagnostics" in the config
// file), with defaults that stay quiet for a well-behaved client.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "proxy/inspect/redact.hpp"

namespace imapscope::diagnose {

struct Thresholds {
  using seconds = std::chrono::seconds;
  // Full resync: a sweep of a mailbox of at least this many messages, or a sweep of
  // the same user's mailbox again within the window.
  std::uint32_t resync_min_messages = 1000;
  seconds resync_repeat_window{3600};
  // IDLE churn: IDLE ended by the client sooner than idle_short with no news, this
  // many times in a session.
  seconds idle_short{120};
  std::uint32_t idle_churn_count = 5;
  // Keepalive wake-ups: DONE within keepalive_reaction of a keepalive, this many times.
  seconds keepalive_reaction{3};
  std::uint32_t keepalive_wakeups = 3;
  // One connection per folder: a user's sessions in IDLE on this many distinct folders.
  std::uint32_t folder_connections = 3;
  // The server's per-user connection limit (Dovecot's mail_max_userip_connections,
  // 10 by default) and the count at which to warn.
  std::uint32_t user_connection_limit = 10;
  std::uint32_t user_connection_warn = 8;
  // Error loop: the same refused command this many times within the window.
  std::uint32_t error_repeats = 3;
  seconds error_window{300};
  // Login failure storm: this many failed logins from one address within the window.
  std::uint32_t login_failures = 5;
  seconds login_failure_window{300};
  // Deleted build-up: this many messages seen flagged \Deleted and not expunged.
  std::uint32_t deleted_messages = 100;
  // Polling: the same NOOP/STATUS this many times in a row, each sooner than the interval.
  std::uint32_t poll_count = 5;
  seconds poll_interval{300};
  // Inactivity timeout: a session ending without LOGOUT after this much silence.
  seconds timeout_silence{600};
};

struct Options {
  bool enabled = true;
  Thresholds thresholds;
  // Where the last UIDVALIDITY per user and mailbox is kept across restarts; empty:
  // in memory only (a restart forgets, so a change across it goes unseen).
  std::string state_file;
  std::size_t state_entries = 200'000;  // the oldest are forgotten beyond this
  // How users appear in the admin API's list of findings (the config's user_names).
  inspect::UserNames user_names = inspect::UserNames::Hashed;
  // Keys the user labels and the user and mailbox keys of the state file (the
  // secret in <state_dir>/label-key): neither can be computed from a list of names.
  std::string label_key;
};

}  // namespace imapscope::diagnose
