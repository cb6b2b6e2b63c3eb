// The IMAP server of the pre-login phase in routing mode: until a login names a user
// there is no backend to talk to, so this answers the client itself, as nginx's mail
// proxy and Dovecot's imap-login do. Sans-IO: the Session forwards the client's
// commands to it as bytes (instead of to a socket) and feeds its answers back as the
// server's bytes, so STARTTLS, LOGINDISABLED, the login penalty, capability rewriting
// and transcripts stay the Session's.
//
// It answers CAPABILITY, NOOP, LOGOUT, ID (whose parameters it keeps for the backend),
// STARTTLS (which the Session answers itself: one reaching here is refused), and takes
// LOGIN and AUTHENTICATE PLAIN / LOGIN / XOAUTH2 / OAUTHBEARER, with or without SASL-IR,
// through every continuation, until a login is complete. Then it stops taking input
// and hands the login over (take_login()); the relay looks the user up and replays it
// on a backend, or calls resume() when it was refused.
//
//   PreLoginServer server(settings);
//   session.feed_server(server.greeting());
//   ... for each batch of session.to_server() bytes (the caller keeps what is left):
//   std::string answers;
//   server.feed(pending, answers);             // consumes whole lines and literals
//   session.feed_server(answers);
//   if (server.login_ready()) route(server.take_login());
//   if (server.closed()) ... end the session once the answers are written
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/imap/token.hpp"
#include "proxy/route/sasl.hpp"

namespace imapscope::route {

struct PreLoginSettings {
  // The capability list without brackets, e.g. "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID
  // ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN".
  std::string capabilities;
};

// One complete login as the client sent it. Holds credentials: never log it whole.
struct LoginAttempt {
  std::string tag;
  std::string mechanism;  // "LOGIN" for the LOGIN command; for AUTHENTICATE the upper-case SASL mechanism
  bool sasl = false;      // AUTHENTICATE
  std::string method;     // nginx Auth-Method: "plain", "login", "xoauth2", "oauthbearer"
  std::string user;       // LOGIN's first arg / PLAIN authcid / SASL LOGIN user / XOAUTH2 user= / OAUTHBEARER a=
  std::string authzid;    // PLAIN's authorization identity when given
  std::string secret;     // password or token
  // The client's bytes of the whole command, split where the client waited for a
  // continuation request ("+") from the server: steps[0] is sent at once, each later
  // step after the backend's next "+". Each ends with CRLF (literal bytes included;
  // a bare LF the client sent is made CRLF).
  std::vector<std::string> steps;
};

class PreLoginServer {
 public:
  // The most a command line (one line part, or one SASL response) and a literal may
  // hold, Dovecot's imap_max_line_length; and a whole command, literals included.
  static constexpr std::size_t kMaxLine = 64 * 1024;
  static constexpr std::size_t kMaxCommand = 128 * 1024;

  explicit PreLoginServer(PreLoginSettings settings);

  // "* OK [CAPABILITY ...] IMAP proxy ready.\r\n"
  std::string greeting() const;

  // Consumes whole lines (and whole literals) from the front of `in`, answering each
  // complete command into `out`; a partial line or literal stays in `in` for the next
  // call, with more bytes after it. Feeding the same bytes in any split gives the same
  // answers. Consumes nothing more once a login is complete (until resume()) or after
  // closed(). A line or literal over kMaxLine, or a command over kMaxCommand, is
  // answered "tag BAD" and dropped (the client's bytes of it are skipped). Never throws.
  void feed(std::string_view& in, std::string& out);

  // A complete login waits to be taken.
  bool login_ready() const { return login_.has_value(); }
  // The login, once (an empty one when none is ready). Input stays stopped until resume().
  LoginAttempt take_login();
  // The login was refused (by the lookup or the backend): take commands again.
  void resume();
  // LOGOUT was answered, or the client sent a LITERAL+ whose size can't even be
  // counted (the stream can't be followed): nothing more is taken.
  bool closed() const { return closed_; }

  // The last ID's parameter list as the client sent it: "(...)" (a literal in it as
  // sent: "{n}" CRLF and its bytes) or "NIL"; empty when the client sent no valid ID.
  // replay_id_command() reads it.
  const std::string& client_id() const { return client_id_; }
  // Logins seen so far, the one waiting included (nginx's Auth-Login-Attempt).
  unsigned logins() const { return logins_; }
  // The capability list, learnt later from the backends.
  void set_capabilities(std::string capabilities) { settings_.capabilities = std::move(capabilities); }
  const std::string& capabilities() const { return settings_.capabilities; }

 private:
  enum class Input : std::uint8_t {
    Command,       // line parts of a command
    Literal,       // the payload of the literal the last line part announced
    SaslResponse,  // a line answering our AUTHENTICATE continuation
    Skip,          // the payload of a dropped LITERAL+ (not kept)
    Discard,       // the rest of a dropped command's line (not kept)
  };

  void on_command_line(std::string_view part, std::string& out);
  void on_sasl_line(std::string_view line, std::string& out);
  void on_discarded_line(std::string& out);
  void after_dropped_line(std::string_view line_end, bool command_line, std::string& out);
  void on_line_too_long(std::string_view start, std::string& out);
  void drop_command(std::string_view part, std::string_view text, std::string& out);
  void execute(std::string& out);
  void answer_id(const std::string& tag, std::span<const imap::Token> args, std::string& out);
  void answer_login(const std::string& tag, std::span<const imap::Token> args, std::string& out);
  void start_authenticate(const std::string& tag, std::span<const imap::Token> args, std::string& out);
  void continue_sasl(std::string& out);
  void finish_sasl(std::string& out);
  void complete_login(LoginAttempt attempt);
  void end_step() { step_ends_.push_back(command_.size()); }
  void reset_command();
  // The tag of the command being read, for an answer before it is complete: "*" when
  // it has none that is valid.
  std::string current_tag(std::string_view start) const;

  PreLoginSettings settings_;
  Input input_ = Input::Command;
  std::string command_;                 // the bytes of the command so far (line breaks as CRLF)
  std::vector<std::size_t> step_ends_;  // where the client waited for our "+"
  std::size_t scanned_ = 0;             // bytes of the partial line left in `in` with no LF
  std::uint64_t literal_size_ = 0;      // Literal: payload awaited; Skip: bytes left to skip
  std::string discard_tail_;            // Discard: the last bytes of the line (a LITERAL+ header?)
  bool discard_literals_ = false;       // Discard: a command's line (not a SASL response's)
  // AUTHENTICATE in progress.
  std::string sasl_tag_;
  Mechanism mechanism_ = Mechanism::Plain;
  std::vector<std::string> responses_;
  std::optional<LoginAttempt> login_;
  bool waiting_ = false;  // a login was complete: no input until resume()
  bool closed_ = false;
  std::string client_id_;
  unsigned logins_ = 0;
};

}  // namespace imapscope::route
