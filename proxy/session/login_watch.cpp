// The session's side of the login penalty: a LOGIN or AUTHENTICATE waits for as long
// as the gate says before it goes to the server (the rule delay's machinery holds it
// and the client's commands behind it), the credentials it carried are folded into
// the gate's keyed digest as they pass, and the server's tagged answer is reported.
#include "proxy/session/session.hpp"

namespace imapscope::session {

namespace {
bool is_login(const imap::Command& c) {
  return c.kind == imap::CommandKind::Tagged && !c.uid &&
         (c.verb == imap::Verb::Login || c.verb == imap::Verb::Authenticate);
}
}  // namespace

void Session::maybe_hold_login(const imap::Command& c) {
  if (!settings_.login_gate || !is_login(c) || observing()) return;
  const auto wait = settings_.login_gate->login_delay();
  if (wait.count() > 0) start_delay(policy::Direction::Client, wait);
}

void Session::watch_login(const imap::Command& c) {
  LoginGate* gate = settings_.login_gate;
  if (!gate) return;
  if (c.kind == imap::CommandKind::SaslResponse) {
    if (login_ && login_->sasl) login_->credentials = gate->fold_credentials(login_->credentials, c.line);
    return;
  }
  if (!is_login(c)) return;
  // LOGIN user password; AUTHENTICATE mechanism [initial-response]: each as sent.
  std::uint64_t digest = 0;
  for (const auto& arg : c.args) digest = gate->fold_credentials(digest, arg.text);
  login_ = std::make_unique<LoginInFlight>(LoginInFlight{std::string(c.tag), digest, c.verb == imap::Verb::Authenticate});
}

void Session::note_login_answer(const imap::Response& r) {
  if (r.kind != imap::ResponseKind::Tagged || r.tag != login_->tag) return;
  if (r.status == imap::Status::Ok) {
    settings_.login_gate->login_succeeded();
  } else if (r.status == imap::Status::No) {
    settings_.login_gate->login_failed(login_->credentials);
  }
  login_.reset();
}

}  // namespace imapscope::session
