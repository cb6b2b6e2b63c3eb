// The detectors of one session, sans-IO: fed the session's complete messages with
// the time they passed, they collect findings for the caller to take. What needs
// other sessions (UIDVALIDITY across sessions, connections per user, failed logins
// per address) goes through the Registry.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/diagnose/findings.hpp"
#include "proxy/diagnose/registry.hpp"
#include "proxy/imap/command.hpp"
#include "proxy/imap/response.hpp"
#include "proxy/session/close_reason.hpp"

namespace imapscope::diagnose {

class SessionDiagnosis {
 public:
  using Clock = std::chrono::steady_clock;
  // address: the client's IP (no port), for failed logins per address.
  SessionDiagnosis(Registry& registry, std::uint64_t session, std::string address);
  ~SessionDiagnosis();
  SessionDiagnosis(const SessionDiagnosis&) = delete;
  SessionDiagnosis& operator=(const SessionDiagnosis&) = delete;

  // A complete client message: a tagged command, DONE, or a SASL answer (only read
  // for the user name, never kept).
  void client_message(const imap::Command& command, Clock::time_point now);
  // A complete server message, and bytes of any server message (what sweeps cost).
  void server_message(const imap::Response& response, Clock::time_point now);
  void server_bytes(std::uint64_t bytes) { server_bytes_ += bytes; }
  void command_done(std::string_view tag, imap::Status status, Clock::time_point now);
  void idle_started(Clock::time_point now);
  void idle_keepalive(Clock::time_point now);
  void closed(session::CloseReason reason, Clock::time_point now);

  // Findings since the last call.
  std::vector<Finding> take() { return std::exchange(found_, {}); }
  // The user, once logged in (for the log line of a finding).
  const std::string& user() const { return user_; }

 private:
  struct Pending {
    std::string tag;
    imap::Verb verb = imap::Verb::Other;
    bool uid = false;
    std::string key;             // verb and arguments, for repeats (bounded)
    std::string mailbox;         // SELECT/EXAMINE/STATUS: the mailbox it names
    bool sweep = false;          // FETCH 1:* with FLAGS
    bool sweep_if_all = false;   // UID FETCH 1:N with FLAGS: a sweep if every message came back
    bool store_deleted = false;  // STORE that sets \Deleted
    std::uint64_t bytes_at = 0;  // server_bytes_ when it was sent
    std::uint32_t fetched = 0;   // FETCH responses while it was in flight
    std::uint32_t deleted = 0;   // ... of which with \Deleted
  };
  struct Repeat {
    std::uint32_t count = 0;
    Clock::time_point first{}, last{};
    bool reported = false;
  };

  void report(FindingKind kind, std::string detail, std::uint64_t bytes = 0);
  void report_once(FindingKind kind, std::string detail);
  void learn_user(const imap::Command& command);
  void logged_in(Clock::time_point now);
  void command(const imap::Command& command, Clock::time_point now);
  void selected(const Pending& select);
  void sweep_done(const Pending& fetch, Clock::time_point now);
  void failed(const Pending& command, imap::Status status, Clock::time_point now);
  void poll(const Pending& command, Clock::time_point now);
  void idle_done(Clock::time_point now);
  void leave_idle();
  void check_deleted_stored();

  Registry& registry_;
  const Thresholds& limits_;
  std::uint64_t session_;
  std::string address_;
  std::vector<Finding> found_;
  std::uint32_t reported_ = 0;  // bit per FindingKind reported with report_once

  std::string user_;
  // A LOGIN or AUTHENTICATE in flight: the user it names becomes user_ once it succeeds.
  struct Login {
    std::string user;
    std::string sasl_mechanism;  // AUTHENTICATE only
    bool sasl_first_answer = false;
  };
  std::unique_ptr<Login> login_;
  bool counted_connection_ = false;
  bool logout_ = false;
  bool inactivity_bye_ = false;  // the server said it closes for inactivity
  bool server_offers_idle_ = false;
  bool ever_idled_ = false;

  std::vector<Pending> pending_;
  std::uint64_t server_bytes_ = 0;
  Clock::time_point last_activity_{};

  // The selected mailbox.
  std::string mailbox_;
  std::optional<std::uint32_t> exists_;
  std::optional<std::uint32_t> select_uidvalidity_;  // seen while a SELECT is in flight
  std::uint32_t deleted_stored_ = 0;  // messages this session flagged \Deleted in it, not expunged since

  // IDLE.
  bool in_idle_ = false;
  bool idle_news_ = false;
  Clock::time_point idle_since_{}, last_keepalive_{};
  bool news_since_keepalive_ = false;
  std::uint32_t short_idles_ = 0, keepalive_wakeups_ = 0;
  bool short_idle_ended_ = false;  // the last IDLE ended soon without news
  bool registered_idle_ = false;

  // What detectors remember once the client gives them something to watch (refused
  // commands, polling, \Deleted build-up): made then, so an idle session has none.
  struct Watch {
    std::map<std::string, bool, std::less<>> deleted_reported;  // by mailbox
    std::map<std::string, Repeat, std::less<>> errors;           // refused commands by key
    std::string poll_key;
    Clock::time_point poll_last{};
    std::uint32_t poll_streak = 0;
  };
  Watch& watch() {
    if (!watch_) watch_ = std::make_unique<Watch>();
    return *watch_;
  }
  std::unique_ptr<Watch> watch_;
};

}  // namespace imapscope::diagnose
