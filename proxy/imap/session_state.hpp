// What both directions of one IMAP session need to know about each other, shared by
// the CommandDecoder and the ResponseDecoder (role-agnostic, like h11's state).
//
// The client stream depends on the server: a synchronising literal, IDLE and each
// AUTHENTICATE step wait for the server's "+" or its tagged result, and STARTTLS and
// COMPRESS wait for the tagged result before the next byte means anything. The
// decoders record those waits here and the response decoder resolves them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/imap/limits.hpp"
#include "proxy/imap/verbs.hpp"

namespace imapscope::imap {

// RFC 9051 §3.
enum class ProtocolState : std::uint8_t { NotAuthenticated, Authenticated, Selected, Logout };
std::string_view protocol_state_name(ProtocolState s);

// What the next bytes from the client are.
enum class ClientInput : std::uint8_t {
  Commands,          // tagged commands
  AwaitingServer,    // the client waits for "+" or the tagged result of wait_tag()
  LiteralPayload,    // the server sent "+": the client sends its literal's payload
  LiteralCancelled,  // the server answered instead of "+": the literal will not come
  IdleDone,          // in IDLE: the next line is DONE
  SaslResponse,      // the next line answers an AUTHENTICATE challenge (a credential)
};

// Why the client waits (ClientInput::AwaitingServer).
enum class WaitReason : std::uint8_t { Literal, Idle, Sasl, TaggedResult };

// What a "+" from the server answers.
enum class ContinuationFor : std::uint8_t { Literal, Idle, Sasl, Unexpected };
std::string_view continuation_for_name(ContinuationFor c);

struct PendingCommand {
  std::string tag;
  Verb verb = Verb::Other;
  bool uid = false;
};

enum class Status : std::uint8_t { None, Ok, No, Bad, Bye, Preauth };
std::string_view status_name(Status s);

// Effects of a response that the relay must act on.
enum class SessionEffect : std::uint8_t {
  None,
  StartTls,        // tagged OK to STARTTLS: both legs switch to TLS after this line
  CompressDeflate, // tagged OK to COMPRESS DEFLATE: both directions are compressed after it
};

class SessionState {
 public:
  explicit SessionState(const DecoderLimits& limits = {}) : max_pending_(limits.max_pending_commands) {}

  ProtocolState protocol_state() const { return protocol_; }
  // Authenticated or selected: what COMPRESS and the post-login capabilities need.
  bool logged_in() const { return protocol_ == ProtocolState::Authenticated || protocol_ == ProtocolState::Selected; }
  ClientInput client_input() const { return input_; }
  WaitReason wait_reason() const { return wait_reason_; }
  std::string_view wait_tag() const { return wait_tag_; }
  bool greeting_seen() const { return greeting_seen_; }
  // After a tagged OK to STARTTLS or COMPRESS both decoders return Blocked until the
  // relay has changed the transport (TLS handshake, deflate streams) and calls
  // transport_changed(). Bytes that arrived before on the old transport are the
  // relay's to drop (STARTTLS: never read plaintext pipelined before TLS) or to
  // inflate (COMPRESS).
  bool transport_change_pending() const { return transport_change_pending_; }
  void transport_changed() { transport_change_pending_ = false; }
  const std::vector<PendingCommand>& pending() const { return pending_; }

  // --- called by the CommandDecoder ---
  // false when the pending table is full.
  [[nodiscard]] bool add_pending(std::string_view tag, Verb verb, bool uid);
  void await_server(WaitReason reason, std::string_view tag);
  void await_server_again(WaitReason reason);  // same tag as the last wait
  void set_client_input(ClientInput input) { input_ = input; }

  // --- called by the ResponseDecoder ---
  ContinuationFor on_continuation();
  // Every server message; returns true for the first one, the greeting
  // (greeting = "*" SP (resp-cond-auth / resp-cond-bye) CRLF, RFC 9051 §7.1).
  bool on_server_message();
  void on_untagged_status(Status status, bool greeting);
  struct TaggedOutcome {
    std::optional<PendingCommand> command;  // the command it completes, if it was pending
    SessionEffect effect = SessionEffect::None;
    bool cancels_literal = false;           // the server refused a synchronising literal
  };
  TaggedOutcome on_tagged(std::string_view tag, Status status);

 private:
  void apply_result(const PendingCommand& command, Status status, TaggedOutcome& outcome);

  std::size_t max_pending_;
  ProtocolState protocol_ = ProtocolState::NotAuthenticated;
  ClientInput input_ = ClientInput::Commands;
  WaitReason wait_reason_ = WaitReason::TaggedResult;
  std::string wait_tag_;
  bool greeting_seen_ = false;
  bool transport_change_pending_ = false;
  std::vector<PendingCommand> pending_;
};

}  // namespace imapscope::imap
