#include "proxy/diagnose/session_diagnosis.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/redact.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::diagnose {
namespace {

using imap::TokenKind;
using Clock = std::chrono::steady_clock;

std::string minutes(Clock::duration d) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 120) return std::to_string(s) + " s";
  return std::to_string(s / 60) + " min";
}

// A 32-bit number (UIDVALIDITY, message numbers), the whole text.
std::optional<std::uint32_t> number_of(std::string_view text) {
  const auto n = util::parse_unsigned(text);
  if (!n || *n > UINT32_MAX) return std::nullopt;
  return static_cast<std::uint32_t>(*n);
}

// Messages a sequence set names ("1:5,7,9:*"); * is the last message (exists).
std::uint64_t set_size(std::string_view set, std::uint32_t exists) {
  std::uint64_t total = 0;
  auto value = [&](std::string_view v) -> std::uint64_t { return v == "*" ? exists : number_of(v).value_or(0); };
  std::size_t start = 0;
  while (start <= set.size()) {
    const auto comma = set.find(',', start);
    const auto part = set.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    const auto colon = part.find(':');
    if (colon == std::string_view::npos) {
      total += value(part) > 0 ? 1 : 0;
    } else {
      const auto a = value(part.substr(0, colon)), b = value(part.substr(colon + 1));
      total += (a > b ? a - b : b - a) + 1;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return total;
}

enum class Sweep { No, Yes, IfAll };

// FETCH 1:* (or 1:N covering the mailbox) asking for FLAGS, without CHANGEDSINCE.
// UID FETCH 1:N (mbsync's sync: N is the last UID it knows) is one when every
// message of the mailbox came back: known once it is done.
Sweep is_sweep(const imap::Command& c, std::optional<std::uint32_t> exists) {
  if (c.args.size() < 2 || c.args[0].kind != TokenKind::Atom) return Sweep::No;
  const auto set = c.args[0].text;
  const bool whole = set == "1:*" || set == "*:1" ||
                     (!c.uid && exists && *exists > 0 && set_size(set, *exists) >= *exists && set.starts_with("1:"));
  const bool uid_range = c.uid && set.starts_with("1:") && set.find(',') == std::string_view::npos;
  if (!whole && !uid_range) return Sweep::No;
  bool flags = false;
  for (const auto& t : c.args.subspan(1)) {
    if (t.is_atom("FLAGS")) flags = true;
    if (t.is_atom("CHANGEDSINCE")) return Sweep::No;  // CONDSTORE: only what changed
  }
  if (!flags) return Sweep::No;
  return whole ? Sweep::Yes : Sweep::IfAll;
}

bool stores_deleted(const imap::Command& c) {
  bool setting = false, deleted = false;
  for (const auto& t : c.args.subspan(c.args.empty() ? 0 : 1)) {
    if (t.kind != TokenKind::Atom) continue;
    const auto item = t.text;
    if (imap::iequals(item.substr(0, 6), "+FLAGS") || imap::iequals(item.substr(0, 5), "FLAGS")) setting = true;
    if (imap::iequals(item, "\\Deleted")) deleted = true;
  }
  return setting && deleted;
}

// "* 5 FETCH (UID 9 FLAGS (\Seen \Deleted))": whether FLAGS holds \Deleted.
bool fetch_shows_deleted(const imap::Response& r) {
  bool in_flags = false;
  for (std::size_t i = 0; i < r.args.size(); ++i) {
    const auto& t = r.args[i];
    if (!in_flags) {
      if (t.is_atom("FLAGS") && i + 1 < r.args.size() && r.args[i + 1].kind == TokenKind::ListOpen) {
        in_flags = true;
        ++i;
      }
      continue;
    }
    if (t.kind == TokenKind::ListClose) return false;
    if (t.is_atom("\\Deleted")) return true;
  }
  return false;
}

// What makes two commands "the same" for repeats: name and arguments, bounded.
std::string key_of(const imap::Command& c) {
  std::string key(imap::verb_name(c.verb));
  if (c.verb == imap::Verb::Other) key.assign(c.name);
  if (c.uid) key.insert(0, "UID ");
  for (const auto& t : c.args) {
    if (key.size() > 200) break;
    key.push_back(' ');
    key.append(t.kind == TokenKind::ListOpen ? "(" : t.kind == TokenKind::ListClose ? ")" : t.text.substr(0, 100));
  }
  return key;
}

}  // namespace

SessionDiagnosis::SessionDiagnosis(Registry& registry, std::uint64_t session, std::string address)
    : registry_(registry), limits_(registry.thresholds()), session_(session), address_(std::move(address)) {}

SessionDiagnosis::~SessionDiagnosis() {
  leave_idle();
  if (counted_connection_) registry_.user_disconnected(user_);
}

void SessionDiagnosis::report(FindingKind kind, std::string detail, std::uint64_t bytes) {
  found_.push_back(Finding{kind, std::move(detail), bytes});
}

void SessionDiagnosis::report_once(FindingKind kind, std::string detail) {
  const auto bit = 1u << static_cast<unsigned>(kind);
  if (reported_ & bit) return;
  reported_ |= bit;
  report(kind, std::move(detail));
}

void SessionDiagnosis::client_message(const imap::Command& c, Clock::time_point now) {
  last_activity_ = now;
  switch (c.kind) {
    case imap::CommandKind::SaslResponse:
      if (login_ && !login_->sasl_mechanism.empty() && login_->user.empty()) {
        login_->user = inspect::sasl_user(login_->sasl_mechanism, c.line, login_->sasl_first_answer).value_or("");
      }
      if (login_) login_->sasl_first_answer = false;
      return;
    case imap::CommandKind::IdleDone:
      // Anything but DONE ends IDLE with the server's BAD: an error, not churn.
      if (c.malformed) {
        in_idle_ = false;
      } else {
        idle_done(now);
      }
      return;
    case imap::CommandKind::Tagged:
      if (!c.rejected && !c.malformed && !c.tag.empty()) command(c, now);
      return;
  }
}

void SessionDiagnosis::learn_user(const imap::Command& c) {
  login_ = std::make_unique<Login>();
  if (c.verb == imap::Verb::Login && !c.args.empty()) {
    login_->user = c.args.front().string_value().value_or("");
  } else if (c.verb == imap::Verb::Authenticate && !c.args.empty()) {
    login_->sasl_mechanism = std::string(c.args.front().text);
    login_->sasl_first_answer = true;
    if (c.args.size() > 1) {  // SASL-IR: the first answer on the command line
      login_->user = inspect::sasl_user(login_->sasl_mechanism, c.args[1].text, true).value_or("");
      login_->sasl_first_answer = false;
    }
  }
}

void SessionDiagnosis::command(const imap::Command& c, Clock::time_point now) {
  const bool after_short_idle = std::exchange(short_idle_ended_, false);
  Pending p;
  p.tag.assign(c.tag);
  p.verb = c.verb;
  p.uid = c.uid;
  p.key = key_of(c);
  p.bytes_at = server_bytes_;
  switch (c.verb) {
    case imap::Verb::Login:
    case imap::Verb::Authenticate:
      learn_user(c);
      break;
    case imap::Verb::Select:
    case imap::Verb::Examine:
    case imap::Verb::Status:
      if (!c.args.empty()) p.mailbox = c.args.front().string_value().value_or("");
      if (c.verb != imap::Verb::Status) {
        check_deleted_stored();
        select_uidvalidity_.reset();
        exists_.reset();
      }
      break;
    case imap::Verb::Fetch: {
      const auto sweep = is_sweep(c, exists_);
      p.sweep = sweep == Sweep::Yes;
      p.sweep_if_all = sweep == Sweep::IfAll;
      break;
    }
    case imap::Verb::Store:
      p.store_deleted = stores_deleted(c);
      if (p.store_deleted && !c.args.empty()) {
        deleted_stored_ += static_cast<std::uint32_t>(std::min<std::uint64_t>(set_size(c.args[0].text, exists_.value_or(0)), UINT32_MAX));
      }
      break;
    case imap::Verb::Expunge:
    case imap::Verb::Close:
    case imap::Verb::Move:
      deleted_stored_ = 0;  // the client does purge
      break;
    case imap::Verb::Idle:
      ever_idled_ = true;
      if (after_short_idle && ++short_idles_ >= limits_.idle_churn_count) {
        report_once(FindingKind::IdleChurn, std::to_string(short_idles_) + " times the client ended IDLE within " +
                                                minutes(limits_.idle_short) + " without news, only to IDLE again");
      }
      if (mailbox_.empty()) {
        report_once(FindingKind::IdleWithoutSelect, "IDLE with no mailbox selected");
      }
      break;
    case imap::Verb::Logout:
      logout_ = true;
      break;
    default:
      break;
  }
  if (c.verb == imap::Verb::Noop || c.verb == imap::Verb::Status) poll(p, now);
  pending_.push_back(std::move(p));
}

void SessionDiagnosis::poll(const Pending& p, Clock::time_point now) {
  auto& w = watch();
  if (p.key == w.poll_key && now - w.poll_last < limits_.poll_interval) {
    ++w.poll_streak;
  } else {
    w.poll_key = p.key;
    w.poll_streak = 1;
  }
  w.poll_last = now;
  if (w.poll_streak >= limits_.poll_count && server_offers_idle_ && !ever_idled_) {
    report_once(FindingKind::PollingInsteadOfIdle,
                "\"" + p.key + "\" " + std::to_string(w.poll_streak) + " times in a row, each within " +
                    minutes(limits_.poll_interval) + " of the last; the server offers IDLE and the client never used it");
  }
}

void SessionDiagnosis::server_message(const imap::Response& r, Clock::time_point now) {
  // The server's inactivity BYE ends the silence it reports: the silence counts up to it.
  if (r.kind == imap::ResponseKind::Status && r.status == imap::Status::Bye &&
      r.text.find("nactivity") != std::string_view::npos) {
    inactivity_bye_ = true;
    return;
  }
  last_activity_ = now;
  if (r.kind == imap::ResponseKind::Data) {
    if (in_idle_) {
      idle_news_ = true;
      news_since_keepalive_ = true;
    }
    switch (r.name) {
      case imap::ResponseName::Exists:
        if (r.number) exists_ = *r.number;
        break;
      case imap::ResponseName::Fetch:
        for (auto& p : pending_) {
          if (p.verb != imap::Verb::Fetch && p.verb != imap::Verb::Store) continue;
          ++p.fetched;
          if (p.verb == imap::Verb::Fetch && fetch_shows_deleted(r)) ++p.deleted;
          break;  // the oldest FETCH/STORE in flight gets it
        }
        break;
      case imap::ResponseName::Status:
        // * STATUS mailbox (MESSAGES 3 UIDVALIDITY 1700000000)
        if (!user_.empty() && r.args.size() > 2) {
          const auto mailbox = r.args[0].string_value();
          for (std::size_t i = 1; mailbox && i + 1 < r.args.size(); ++i) {
            if (!r.args[i].is_atom("UIDVALIDITY")) continue;
            if (auto value = number_of(r.args[i + 1].text)) {
              if (auto before = registry_.uidvalidity(user_, *mailbox, *value)) {
                report(FindingKind::UidvalidityChanged, *mailbox + ": UIDVALIDITY " + std::to_string(*before) +
                                                            " before, " + std::to_string(*value) + " now (STATUS)");
              }
            }
          }
        }
        break;
      case imap::ResponseName::Capability:
        for (const auto& t : r.args) {
          if (t.is_atom("IDLE")) server_offers_idle_ = true;
        }
        break;
      default:
        break;
    }
    return;
  }
  if (imap::iequals(r.code, "UIDVALIDITY")) {
    imap::for_each_word(r.code_args, [&](std::string_view word) { select_uidvalidity_ = number_of(word); });
  }
  if (imap::iequals(r.code, "CAPABILITY")) {
    imap::for_each_word(r.code_args, [&](std::string_view cap) {
      if (imap::iequals(cap, "IDLE")) server_offers_idle_ = true;
    });
  }
  const bool refused = r.status == imap::Status::No || r.status == imap::Status::Bye;
  if (refused && (imap::iequals(r.code, "LIMIT") || r.text.find("Maximum number of connections") != std::string_view::npos)) {
    report_once(FindingKind::UserConnectionLimit, "the server refused: \"" + std::string(r.text.substr(0, 200)) + "\"");
  }
}

void SessionDiagnosis::command_done(std::string_view tag, imap::Status status, Clock::time_point now) {
  last_activity_ = now;
  const auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.tag == tag; });
  if (it == pending_.end()) return;
  const Pending p = std::move(*it);
  pending_.erase(it);
  if (p.verb == imap::Verb::Idle) leave_idle();
  if (status != imap::Status::Ok) {
    failed(p, status, now);
    return;
  }
  switch (p.verb) {
    case imap::Verb::Login:
    case imap::Verb::Authenticate:
      logged_in(now);
      break;
    case imap::Verb::Select:
    case imap::Verb::Examine:
      selected(p);
      break;
    case imap::Verb::Fetch:
      if (p.sweep || (p.sweep_if_all && exists_ && *exists_ > 0 && p.fetched >= *exists_)) sweep_done(p, now);
      if (p.deleted >= limits_.deleted_messages && !watch().deleted_reported[mailbox_]) {
        watch().deleted_reported[mailbox_] = true;
        report(FindingKind::DeletedBuildUp, mailbox_ + ": " + std::to_string(p.deleted) +
                                                " messages flagged \\Deleted and not expunged (seen in FETCH FLAGS)");
      }
      break;
    default:
      break;
  }
}

void SessionDiagnosis::logged_in(Clock::time_point) {
  const auto login = std::move(login_);
  if (!login || login->user.empty() || counted_connection_) return;
  user_ = std::move(login->user);
  counted_connection_ = true;
  const auto connections = registry_.user_connected(user_);
  // Where the count crosses the warning level and where it reaches the limit, not
  // for every session in between.
  if (connections == limits_.user_connection_warn || connections >= limits_.user_connection_limit) {
    report_once(FindingKind::UserConnectionLimit,
                std::to_string(connections) + " concurrent sessions of this user through imapscope; the server's limit is " +
                    std::to_string(limits_.user_connection_limit));
  }
}

void SessionDiagnosis::selected(const Pending& p) {
  mailbox_ = p.mailbox;
  deleted_stored_ = 0;
  if (select_uidvalidity_ && !user_.empty()) {
    if (auto before = registry_.uidvalidity(user_, mailbox_, *select_uidvalidity_)) {
      report(FindingKind::UidvalidityChanged, mailbox_ + ": UIDVALIDITY " + std::to_string(*before) +
                                                  " in an earlier session of this user, " +
                                                  std::to_string(*select_uidvalidity_) + " now");
    }
  }
}

void SessionDiagnosis::sweep_done(const Pending& p, Clock::time_point now) {
  const std::uint64_t bytes = server_bytes_ - p.bytes_at;
  const auto again = user_.empty() ? Registry::Resweep{} : registry_.swept(user_, mailbox_, p.fetched, bytes, now);
  // A sweep is what every client does to sync a folder: a finding when the mailbox is
  // large, or when the client keeps fetching the same one again (thresholds.hpp).
  if (p.fetched < limits_.resync_min_messages && !again.report) return;
  std::string detail = mailbox_ + ": flags of " + std::to_string(p.fetched) + " messages, " +
                       std::to_string(bytes) + " bytes";
  if (again.since) {
    detail += "; the previous full sweep of this mailbox was " + minutes(*again.since) + " ago";
  }
  if (again.report) {
    detail += "; " + std::to_string(again.sweeps) + " sweeps within " + minutes(limits_.resync_repeat_window) +
              ", " + std::to_string(again.bytes) + " bytes fetched again";
  }
  report(FindingKind::FullResync, std::move(detail), bytes);
}

void SessionDiagnosis::failed(const Pending& p, imap::Status status, Clock::time_point now) {
  if (p.verb == imap::Verb::Login || p.verb == imap::Verb::Authenticate) {
    login_.reset();
    const auto [count, storm] = registry_.login_failed(address_, now);
    if (storm) {
      report(FindingKind::LoginFailureStorm, std::to_string(count) + " failed logins from " + address_ + " within " +
                                                 minutes(limits_.login_failure_window));
    }
    return;  // a wrong password repeated is a storm, not a loop
  }
  auto& errors = watch().errors;
  auto& repeat = errors[p.key];
  if (repeat.count == 0 || now - repeat.first > limits_.error_window) repeat = Repeat{0, now, now, repeat.reported};
  ++repeat.count;
  repeat.last = now;
  if (repeat.count >= limits_.error_repeats && !repeat.reported) {
    repeat.reported = true;
    report(FindingKind::ErrorLoop, "\"" + p.key + "\" refused (" + std::string(imap::status_name(status)) + ") " +
                                       std::to_string(repeat.count) + " times within " + minutes(now - repeat.first));
  }
  if (errors.size() > 64) {  // bounded: forget the oldest unreported
    auto oldest = std::min_element(errors.begin(), errors.end(),
                                   [](const auto& a, const auto& b) { return a.second.last < b.second.last; });
    errors.erase(oldest);
  }
}

void SessionDiagnosis::idle_started(Clock::time_point now) {
  in_idle_ = true;
  idle_news_ = false;
  news_since_keepalive_ = false;
  last_keepalive_ = {};
  idle_since_ = now;
  if (!user_.empty() && !mailbox_.empty()) {
    registered_idle_ = true;
    const auto folders = registry_.idle_on(user_, session_, mailbox_);
    if (folders >= limits_.folder_connections) {
      report_once(FindingKind::ConnectionPerFolder,
                  std::to_string(folders) + " connections of this user in IDLE at once, each on another folder");
    }
  }
}

void SessionDiagnosis::idle_keepalive(Clock::time_point now) {
  last_keepalive_ = now;
  news_since_keepalive_ = false;
}

void SessionDiagnosis::idle_done(Clock::time_point now) {
  if (!in_idle_) return;
  // Counted when the next command is IDLE again: a client that ends IDLE to do
  // something (the user opens a message) is not churning.
  short_idle_ended_ = !idle_news_ && now - idle_since_ < limits_.idle_short;
  // In a row: a user's own action lands right after a keepalive now and then; a
  // client woken by each keepalive does it every time.
  if (last_keepalive_ != Clock::time_point{} && !news_since_keepalive_ &&
      now - last_keepalive_ <= limits_.keepalive_reaction) {
    ++keepalive_wakeups_;
    if (keepalive_wakeups_ >= limits_.keepalive_wakeups) {
      report_once(FindingKind::KeepaliveWakeups, std::to_string(keepalive_wakeups_) +
                                                     " times in a row the client ended IDLE right after a server keepalive");
    }
  } else {
    keepalive_wakeups_ = 0;
  }
  in_idle_ = false;
}

void SessionDiagnosis::leave_idle() {
  in_idle_ = false;
  if (registered_idle_) registry_.idle_off(user_, session_);
  registered_idle_ = false;
}

void SessionDiagnosis::check_deleted_stored() {
  if (deleted_stored_ < limits_.deleted_messages || mailbox_.empty() || watch().deleted_reported[mailbox_]) return;
  watch().deleted_reported[mailbox_] = true;
  report(FindingKind::DeletedBuildUp, mailbox_ + ": this session flagged " + std::to_string(deleted_stored_) +
                                          " messages \\Deleted and left without expunging them");
}

void SessionDiagnosis::closed(session::CloseReason reason, Clock::time_point now) {
  check_deleted_stored();
  const bool was_idle = in_idle_;
  leave_idle();
  if (logout_ || last_activity_ == Clock::time_point{}) return;
  const auto silence = now - last_activity_;
  using session::CloseReason;
  std::string who;
  if (inactivity_bye_ || (reason == CloseReason::ServerClosed && silence >= limits_.timeout_silence)) {
    who = "the server closed it (its inactivity timeout)";
  } else if (reason == CloseReason::IdleTimeout) {
    who = "imapscope's idle timeout closed it: the client, or a NAT on the way, had gone silent";
  } else if ((reason == CloseReason::ClientClosed || reason == CloseReason::ClientError) &&
             silence >= limits_.timeout_silence) {
    who = "the client's side went away without LOGOUT (a NAT or firewall timeout, or the client's own)";
  } else {
    return;
  }
  report(FindingKind::InactivityTimeout, who + " after " + minutes(silence) + " of silence" +
                                             (was_idle ? ", in IDLE" : ""));
}

}  // namespace imapscope::diagnose
