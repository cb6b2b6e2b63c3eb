// What a session tells whoever watches it (metrics now, transcripts later): const
// facts, nothing back to the wire. Called on the relay's thread, in stream order;
// implementations keep it cheap (no formatting, no lookups by string per message).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/identify/client_info.hpp"
#include "proxy/imap/command.hpp"
#include "proxy/imap/events.hpp"
#include "proxy/imap/response.hpp"
#include "proxy/imap/session_state.hpp"
#include "proxy/session/close_reason.hpp"

namespace imapscope::session {

// A client behaviour the diagnostics noticed (diagnose/): name is a bounded label
// value, meaning and fix are fixed texts, detail is this case (never a credential).
struct FindingReport {
  std::string_view name;
  std::string_view detail;
  std::string_view meaning;
  std::string_view fix;
  std::uint64_t bytes = 0;  // what it cost on the wire, where known
};

class Observer {
 public:
  virtual ~Observer() = default;
  // A complete tagged command of the client (forwarded, or answered by the proxy).
  virtual void command(const imap::Command& command) = 0;
  // The tagged answer to a command: the server's, or the proxy's own (local).
  virtual void command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool local) = 0;
  // The server confirmed IDLE ("+") / IDLE ended (its tagged answer).
  virtual void idle_started() = 0;
  // An untagged status line during IDLE: the server's keepalive ("* OK Still here").
  virtual void idle_keepalive() = 0;
  // Literal payload bytes of one message, each way.
  virtual void literal_bytes(bool from_client, std::uint64_t bytes) = 0;
  // A message refused by a limit, or a stream that can't be decoded any more.
  virtual void protocol_error(bool from_client, imap::ErrorCode code) = 0;
  // Who the client is now: every change of the guess, with settled = true once
  // identification is done (ID seen, or enough commands) and for a later ID.
  virtual void client_identified(const identify::ClientInfo& client, bool settled) = 0;

  // The bytes of each message as they pass (transcripts), in stream order: kind is
  // MessagePart (a head that goes on with a literal), LiteralData (payload),
  // Message (the rest, or the whole message), Skipped/Error (undecoded bytes). The
  // parsed message is valid during the call. SASL responses come as commands of
  // kind SaslResponse: credentials, never to be written down.
  virtual void client_bytes(const imap::Command& /*command*/, imap::EventKind /*kind*/, std::string_view /*raw*/) {}
  virtual void server_bytes(const imap::Response& /*response*/, imap::EventKind /*kind*/, std::string_view /*raw*/) {}
  // Bytes the proxy wrote to the client itself (local answers, BYE, injected lines).
  virtual void proxy_to_client(std::string_view /*bytes*/) {}
  // A rewrite rule matched the message about to pass (from_client: a command).
  virtual void rule_hit(std::string_view /*rule*/, bool /*from_client*/) {}
  // TLS on the client leg after STARTTLS, and the session's end.
  virtual void client_tls_started(std::string_view /*version*/) {}
  virtual void session_closed(CloseReason /*reason*/, const CloseCause& /*cause*/) {}
  // The diagnostics found something about this session's client.
  virtual void finding(const FindingReport& /*report*/) {}

 protected:
  Observer() = default;
  Observer(const Observer&) = default;
  Observer& operator=(const Observer&) = default;
};

// A session as it starts: what observers may key on.
struct SessionStart {
  std::string_view listener;        // name from the config (a bounded set)
  std::string_view tls;             // the listener's mode: "implicit", "starttls" or "none"
  std::uint64_t id = 0;             // as in the log lines
  std::string_view client_address;  // "127.0.0.1:51234"
};

// What the whole proxy tells its watcher (metrics): sessions coming and going,
// bytes, TLS, the upstream. Called from every event loop's thread at once:
// implementations are thread-safe.
class Telemetry {
 public:
  virtual ~Telemetry() = default;
  // A client connected to a listener; returns the observer of its session (may be
  // null). session_ended comes once for each.
  virtual std::unique_ptr<Observer> session_started(const SessionStart& start) = 0;
  virtual void session_ended(std::string_view listener, std::string_view tls, CloseReason reason, double seconds) = 0;
  // Bytes read from one side (counted per read, not per message).
  virtual void bytes(bool from_client, std::uint64_t bytes) = 0;
  // A TLS handshake: client side (the proxy's certificate) or upstream; version as
  // OpenSSL names it ("TLSv1.3"), empty when it failed; resumed: an abbreviated
  // handshake that resumed an earlier TLS session.
  virtual void tls_handshake(bool client_side, bool ok, std::string_view version, bool resumed) = 0;
  // Connecting to the upstream, up to its greeting: how long, and whether it worked.
  virtual void upstream_connected(bool ok, double seconds) = 0;
  // A rule reload (SIGHUP) and whether it was taken.
  virtual void reload(bool ok) = 0;
  // A PROXY protocol header on a listener that requires one: "accepted", "local",
  // or why the connection was refused ("untrusted", "invalid", "timed_out", "closed").
  // A refused connection starts no session.
  virtual void proxy_header(std::string_view /*outcome*/) {}
  // The limits before login (proxy/guard/): a connection refused or a pre-login
  // session evicted; reason "sessions_full", "address_full", "prelogin_full_evicted".
  virtual void limit_refusal(std::string_view /*reason*/) {}
  // A login the server answered NO; repeated: the same credentials as the address's
  // last failure (not counted again by the penalty).
  virtual void login_failed(bool /*repeated*/) {}
  // A login held back by the login penalty, for this long.
  virtual void login_penalty(double /*seconds*/) {}

 protected:
  Telemetry() = default;
  Telemetry(const Telemetry&) = default;
  Telemetry& operator=(const Telemetry&) = default;
};

}  // namespace imapscope::session
