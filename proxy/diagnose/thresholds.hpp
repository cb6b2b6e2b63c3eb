// When a behaviour counts as a finding: configuration ("diagnostics" in the config
// file), with defaults that stay quiet for a well-behaved client.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "proxy/inspect/redact.hpp"

namespace imapscope::diagnose {

// Every default is set so that what ordinary clients do stays quiet, and what is
// left costs a server enough to be worth an administrator's time. The seeds are in
// ../shared/seeds/ (000: a large provider's IMAP lessons, IDLE and purge; 001:
// client sync by FETCH 1:* (UID FLAGS); 002/003: IDLE, keepalives, timeouts); the client
// figures are from their defaults (named below) and from the measurement of one
// FETCH response of UID and FLAGS through Dovecot 2.3: 40 to 48 bytes a message.
struct Thresholds {
  using seconds = std::chrono::seconds;
  // Full resync, one sweep: flags of a mailbox this large in one go (about 1 MB of
  // FLAGS at 40-odd bytes a message, more with headers). Every client sweeps each
  // folder once when it first syncs (seed 001: "the usual approach"), and
  // Thunderbird without CONDSTORE on each SELECT: a mailbox below this is their
  // ordinary traffic.
  std::uint32_t resync_min_messages = 20'000;
  // Full resync, again: the same user's mailbox swept again within the window, when
  // the mailbox has at least resync_repeat_min_messages ("thousands of messages") and
  // the sweeps after the first within the window brought at least
  // resync_repeat_min_bytes (a client that throws its cache away and downloads
  // megabytes again). A 5-message INBOX selected twice (1.6 KB: Thunderbird's
  // connections, mutt's re-open on new mail, mbsync at each run) stays quiet; so
  // does a 2,000-message folder swept twice (about 90 KB); mutt without a header cache
  // re-opening a 3,000-message folder (over a megabyte of headers) does not.
  std::uint32_t resync_repeat_min_messages = 1'000;
  std::uint64_t resync_repeat_min_bytes = 1 << 20;
  seconds resync_repeat_window{3600};
  // IDLE churn: IDLE sent again right after one the client ended sooner than
  // idle_short with no news, this many times in a session. 120 s is Dovecot's
  // keepalive interval (imap_idle_notify_interval, seed 000): a client that can't
  // wait for one keepalive; ten such, not a few (a network blip, a user's "get
  // messages" button), make a pattern. RFC 2177 asks for up to 29 minutes.
  seconds idle_short{120};
  std::uint32_t idle_churn_count = 10;
  // Keepalive wake-ups: DONE within keepalive_reaction of a keepalive, this many
  // times in a row (a DONE that didn't follow one starts the count again). The seed's
  // K-9 Mail ends every IDLE at a keepalive; a user's own action lands within 3 s of a
  // 2-minute keepalive one time in 40, so five in a row is never chance (10 minutes of
  // wake-ups with Dovecot's default).
  seconds keepalive_reaction{3};
  std::uint32_t keepalive_wakeups = 5;
  // One connection per folder: a user's sessions in IDLE on this many distinct
  // folders at once. Thunderbird keeps up to 5 connections per account
  // (mail.server.default.max_cached_connections) and IDLEs in the folder each has
  // selected: 5 folders are its ordinary state, OfflineIMAP's idlefolders one
  // connection each, usually INBOX and a folder or two; 6 is more than one ordinary
  // client (seed 000: K-9 Mail's push, one connection for every folder).
  std::uint32_t folder_connections = 6;
  // The server's per-user connection limit (Dovecot's mail_max_userip_connections,
  // 10 by default) and the count at which to warn: Thunderbird's 5 and a phone or two
  // stay below 8.
  std::uint32_t user_connection_limit = 10;
  std::uint32_t user_connection_warn = 8;
  // Error loop: the same refused command this many times within the window. Clients
  // retry a refused command on their next check (Thunderbird every 10 minutes, mutt
  // at its keepalive, 5 minutes): a handful in 10 minutes is that; ten is a client
  // that doesn't learn (seed 000: "BAD Expected DONE" over and over).
  std::uint32_t error_repeats = 10;
  seconds error_window{600};
  // Login failure storm: this many failed logins from one address within the window.
  // A changed password fails on each of Thunderbird's 5 connections at once, and a
  // person mistypes a few times: 10 is a device retrying by itself or guessing.
  std::uint32_t login_failures = 10;
  seconds login_failure_window{300};
  // Deleted build-up: this many messages seen flagged \Deleted and not expunged. Mutt
  // and Thunderbird purge when leaving the folder; a user's clean-up session flags
  // tens to a couple of hundred. 500 left behind is the seed's Outlook that never
  // purges (seed 000: "IMAP - purge", quota exceeded).
  std::uint32_t deleted_messages = 500;
  // Polling: the same NOOP/STATUS this many times in a row, each sooner than the
  // interval, from a session that never IDLEd. NOOP as a keepalive every few minutes
  // is what RFC 3501 recommends (mutt: imap_keepalive 300 s; Thunderbird checks every
  // 10 minutes): not polling. Once a minute or more often for half an hour is.
  std::uint32_t poll_count = 30;
  seconds poll_interval{60};
  // Inactivity timeout: a session ending without LOGOUT after this much silence.
  // Below the shortest timeout on the way (NAT gateways: often 15 minutes, seeds 000
  // and 003; servers: 10 to 30 minutes), above any client's quiet between commands
  // outside IDLE (Dovecot's keepalives in IDLE are traffic).
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
