// The live view of running sessions (the admin API's /api/sessions): what each
// session is doing now, and its most recent events (the same redacted JSON lines a
// transcript holds) in a bounded ring. A LiveSession is written by its session's
// thread and read by the admin thread, so each one has its own lock; the registry
// lock is taken only when sessions come and go and when the list is read.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/identify/client_info.hpp"
#include "proxy/inspect/event_ring.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::inspect {

struct LiveLimits {
  std::size_t events = 256;              // kept per session; 0: none (the table only)
  std::size_t event_bytes = 256 << 10;   // and at most this many bytes of them
  std::size_t recent_closed = 32;        // closed sessions still shown
};

// What the table shows of one session. Written only through LiveSession::update.
struct LiveFacts {
  std::string user;            // per the user name policy; empty until known
  identify::ClientInfo client;
  bool client_settled = false;
  std::string_view state = "not_authenticated";  // authenticated, selected, idle, logout, closed (literals)
  std::string mailbox;         // the selected one
  std::string last_command;    // its name only: arguments may be private
  std::int64_t last_command_us = 0;
  std::uint64_t commands = 0;
  std::uint64_t bytes_from_client = 0, bytes_from_server = 0;
  std::string tls;             // the client leg's TLS version once known
  std::string_view close_reason;  // session::close_reason_name(): a literal
  std::uint64_t capture = 0;   // the on-demand capture writing it, if any
};

class LiveSession {
 public:
  LiveSession(const session::SessionStart& start, const LiveLimits& limits);

  std::uint64_t id() const { return id_; }
  // An event line (a transcript line, already redacted) for the ring.
  void add_event(std::string line);
  // The session went quiet (IDLE): its events are deflated until someone reads them.
  void pack_events();
  template <typename Change>
  void update(Change&& change) {
    std::lock_guard lock(mutex_);
    change(facts_);
  }
  // The events after sequence number `after` (0: all kept), and the newest number.
  std::vector<std::string> events_after(std::uint64_t after, std::uint64_t& last) const;
  // Every kept event, oldest first (a capture starting mid-session writes them).
  std::vector<std::string> backlog() const;
  nlohmann::json summary(std::int64_t now_us) const;
  void close(std::string_view reason);  // a literal (close_reason_name()): kept as a view
  bool closed() const;

 private:
  const std::uint64_t id_;
  const std::string listener_, tls_mode_, client_address_;
  const std::int64_t started_us_;
  mutable std::mutex mutex_;
  LiveFacts facts_;
  const bool keeps_events_;  // LiveLimits::events > 0
  bool closed_ = false;
  std::int64_t closed_us_ = 0;
  EventRing events_;
  std::uint64_t last_sequence_ = 0;  // of the newest event
};

class LiveRegistry {
 public:
  explicit LiveRegistry(LiveLimits limits) : limits_(limits) {}
  std::shared_ptr<LiveSession> open(const session::SessionStart& start);
  // The session ended: it moves to the bounded list of recently closed ones.
  void closed(std::uint64_t id);
  std::shared_ptr<LiveSession> find(std::uint64_t id) const;
  std::vector<std::shared_ptr<LiveSession>> active() const;
  std::vector<std::shared_ptr<LiveSession>> recent() const;  // newest last
  const LiveLimits& limits() const { return limits_; }

 private:
  const LiveLimits limits_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::shared_ptr<LiveSession>> active_;
  std::deque<std::shared_ptr<LiveSession>> recent_;
};

std::int64_t now_us();

}  // namespace imapscope::inspect
