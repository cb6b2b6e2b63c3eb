// Why a session ended. One value per cause an administrator would tell apart.
#pragma once

#include <cstdint>
#include <string_view>

namespace imapscope::session {

enum class CloseReason : std::uint8_t {
  ClientClosed,         // the client closed its connection (after LOGOUT or not)
  ServerClosed,         // the mail server closed its connection
  ClientError,          // reading from or writing to the client failed (reset, broken pipe)
  ServerError,          // reading from or writing to the server failed
  UpstreamUnavailable,  // no upstream address accepted a connection in time
  UpstreamTlsFailed,    // TLS towards the server failed (handshake, certificate, STARTTLS refused)
  UpstreamGreeting,     // the server sent no usable greeting in time
  ClientTlsFailed,      // the client's TLS handshake failed or timed out
  IdleTimeout,          // neither side sent anything for the idle timeout
  LoginTimeout,         // the client did not log in within the login timeout (slowloris)
  ServerTimeout,        // the server owed an answer and sent nothing for the server timeout
  ProtocolError,        // the client stream can no longer be delimited (fatal decode error)
  Shutdown,             // imapscope is stopping and the drain grace period ended
  Evicted,              // not logged in yet when the pre-login sessions were full: the oldest made room
  Kicked,               // routing mode: the administrator disconnected it (a user's, a backend's)
  LoginRefused,         // routing mode: the lookup refused the login for good (nginx closes then too)
  PreLoginLogout,       // routing mode: the client logged out before any backend took its login
};

// What made a session end, where a system or TLS error did (the *_error reasons) or
// a stream stopped inside a message: cause is a word from a small set ("reset",
// "broken_pipe", "tls_alert", "eof_mid_message", ...), detail the system's or
// OpenSSL's words for it ("bad record mac"). Empty when nothing more is known.
struct CloseCause {
  std::string_view cause;
  std::string_view detail;
};

constexpr std::string_view close_reason_name(CloseReason r) {
  switch (r) {
    case CloseReason::ClientClosed: return "client_closed";
    case CloseReason::ServerClosed: return "server_closed";
    case CloseReason::ClientError: return "client_error";
    case CloseReason::ServerError: return "server_error";
    case CloseReason::UpstreamUnavailable: return "upstream_unavailable";
    case CloseReason::UpstreamTlsFailed: return "upstream_tls_failed";
    case CloseReason::UpstreamGreeting: return "upstream_greeting";
    case CloseReason::ClientTlsFailed: return "client_tls_failed";
    case CloseReason::IdleTimeout: return "idle_timeout";
    case CloseReason::LoginTimeout: return "login_timeout";
    case CloseReason::ServerTimeout: return "server_timeout";
    case CloseReason::ProtocolError: return "protocol_error";
    case CloseReason::Shutdown: return "shutdown";
    case CloseReason::Evicted: return "prelogin_evicted";
    case CloseReason::Kicked: return "kicked";
    case CloseReason::LoginRefused: return "login_refused";
    case CloseReason::PreLoginLogout: return "prelogin_logout";
  }
  return "unknown";
}

}  // namespace imapscope::session
