#include "proxy/diagnose/diagnostics.hpp"

#include "proxy/diagnose/session_diagnosis.hpp"
#include "proxy/util/cidr.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::diagnose {
namespace {

using Clock = std::chrono::steady_clock;

class DiagnosedSession final : public session::Observer {
 public:
  DiagnosedSession(Diagnostics& owner, const session::SessionStart& start, std::unique_ptr<session::Observer> inner,
                   const std::function<Clock::time_point()>& clock)
      : owner_(owner),
        inner_(std::move(inner)),
        id_(start.id),
        clock_(clock),
        diagnosis_(owner.registry(), start.id, std::string(util::address_of(start.client_address))) {}

  void command(const imap::Command& c) override {
    if (inner_) inner_->command(c);
  }
  void command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool local) override {
    if (inner_) inner_->command_done(tag, verb, uid, status, local);
    diagnosis_.command_done(tag, status, clock_());
    flush();
  }
  void idle_started() override {
    if (inner_) inner_->idle_started();
    diagnosis_.idle_started(clock_());
    flush();
  }
  void idle_keepalive() override {
    if (inner_) inner_->idle_keepalive();
    diagnosis_.idle_keepalive(clock_());
  }
  void literal_bytes(bool from_client, std::uint64_t n) override {
    if (inner_) inner_->literal_bytes(from_client, n);
  }
  void protocol_error(bool from_client, imap::ErrorCode code) override {
    if (inner_) inner_->protocol_error(from_client, code);
  }
  void client_identified(const identify::ClientInfo& client, bool settled) override {
    if (inner_) inner_->client_identified(client, settled);
    family_ = client.family;
  }
  void client_bytes(const imap::Command& c, imap::EventKind kind, std::string_view raw) override {
    if (inner_) inner_->client_bytes(c, kind, raw);
    if (kind != imap::EventKind::Message) return;
    diagnosis_.client_message(c, clock_());
    flush();
  }
  void server_bytes(const imap::Response& r, imap::EventKind kind, std::string_view raw) override {
    if (inner_) inner_->server_bytes(r, kind, raw);
    diagnosis_.server_bytes(raw.size());
    if (kind != imap::EventKind::Message) return;
    diagnosis_.server_message(r, clock_());
    flush();
  }
  void proxy_to_client(std::string_view bytes) override {
    if (inner_) inner_->proxy_to_client(bytes);
  }
  void rule_hit(std::string_view rule, bool from_client) override {
    if (inner_) inner_->rule_hit(rule, from_client);
  }
  void client_tls_started(std::string_view version) override {
    if (inner_) inner_->client_tls_started(version);
  }
  void session_closed(session::CloseReason reason, const session::CloseCause& cause) override {
    diagnosis_.closed(reason, clock_());
    flush();  // before the others hear of the end: a transcript closes with it
    if (inner_) inner_->session_closed(reason, cause);
  }
  void finding(const session::FindingReport& report) override {
    if (inner_) inner_->finding(report);
  }

 private:
  void flush() {
    for (const auto& f : diagnosis_.take()) {
      const auto& text = finding_text(f.kind);
      // The user's name is not logged: the session id leads to it (transcripts, live view).
      util::log_line(util::LogLevel::Info, "event=finding session=" + std::to_string(id_) + " finding=" +
                                               std::string(text.name) + " client_family=" + family_ +
                                               " detail=" + util::log_quote(f.detail, 400));
      if (inner_) inner_->finding(session::FindingReport{text.name, f.detail, text.meaning, text.fix, f.bytes});
      const auto at = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
      owner_.remember(RecentFinding{at, id_, std::string(text.name), family_, {}, f.detail}, diagnosis_.user());
    }
  }

  Diagnostics& owner_;
  std::unique_ptr<session::Observer> inner_;
  std::uint64_t id_;
  const std::function<Clock::time_point()>& clock_;
  std::string family_ = "unknown";
  SessionDiagnosis diagnosis_;
};

}  // namespace

Diagnostics::Diagnostics(const Options& options, std::shared_ptr<session::Telemetry> inner,
                         std::function<Clock::time_point()> clock)
    : options_(options), registry_(options), inner_(std::move(inner)), clock_(std::move(clock)) {}

void Diagnostics::remember(RecentFinding finding, const std::string& user) {
  finding.user = user.empty() ? std::string() : inspect::user_label(user, options_.user_names, options_.label_key);
  std::lock_guard lock(mutex_);
  if (!finding.user.empty() && (by_user_.size() < kUsers || by_user_.count(finding.user))) {
    ++by_user_[finding.user][finding.finding];
  }
  recent_.push_back(std::move(finding));
  if (recent_.size() > kRecent) recent_.pop_front();
}

std::vector<RecentFinding> Diagnostics::recent() const {
  std::lock_guard lock(mutex_);
  return {recent_.begin(), recent_.end()};
}

std::map<std::string, std::map<std::string, std::uint64_t>> Diagnostics::by_user() const {
  std::lock_guard lock(mutex_);
  return by_user_;
}

std::unique_ptr<session::Observer> Diagnostics::session_started(const session::SessionStart& start) {
  return std::make_unique<DiagnosedSession>(*this, start, inner_ ? inner_->session_started(start) : nullptr, clock_);
}

void Diagnostics::session_ended(std::string_view listener, std::string_view tls, session::CloseReason reason,
                                double seconds) {
  if (inner_) inner_->session_ended(listener, tls, reason, seconds);
}
void Diagnostics::bytes(bool from_client, std::uint64_t n) {
  if (inner_) inner_->bytes(from_client, n);
}
void Diagnostics::tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) {
  if (inner_) inner_->tls_handshake(client_side, ok, version, resumed);
}
void Diagnostics::upstream_connected(bool ok, double seconds) {
  if (inner_) inner_->upstream_connected(ok, seconds);
}
void Diagnostics::reload(bool ok) {
  if (inner_) inner_->reload(ok);
}
void Diagnostics::proxy_header(std::string_view outcome) {
  if (inner_) inner_->proxy_header(outcome);
}

}  // namespace imapscope::diagnose
