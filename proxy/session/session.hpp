// One proxied IMAP session, without sockets: the relay feeds it the bytes read from
// each leg and writes out what it queues for each leg. It drives both decoders,
// forwards what it doesn't touch as the original bytes, rewrites capability lists for
// the client's leg, and answers locally what the server must not see (STARTTLS and
// COMPRESS of the client leg, commands refused by a limit or by LOGINDISABLED).
// It always sees plaintext: the relay inflates and deflates a compressed client leg.
// When the client's COMPRESS is passed through to the server, the relay forwards the
// compressed streams itself and the session only observes inflated copies.
// Rewrite rules (policy/) judge each message; the session applies their verdicts
// without knowing how rules are written.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/identify/identifier.hpp"
#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "proxy/policy/matcher.hpp"
#include "proxy/session/capabilities.hpp"
#include "proxy/session/close_reason.hpp"
#include "proxy/session/login_gate.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::session {

struct SessionSettings {
  // The decoders' limits, not copied: they must outlive the session (a listener's).
  const imap::DecoderLimits* client_limits = &imap::default_limits();
  const imap::DecoderLimits* server_limits = &imap::default_limits();
  ClientLegView client_leg;
  // The proxy did STARTTLS towards the server before relaying its greeting: the
  // greeting's capabilities are the pre-TLS ones, so they are dropped from it and the
  // client asks again.
  bool hide_greeting_capabilities = false;
  // Client signatures for identification; null: the built-in ones.
  const identify::Signatures* signatures = nullptr;
  // Rewrite rules; null: none. Must outlive the session.
  const policy::RuleStore* rules = nullptr;
  // What time it is (rules that thin keepalives); tests pass their own.
  std::chrono::steady_clock::time_point (*clock)() = &std::chrono::steady_clock::now;
  // Turn COMPRESS DEFLATE on towards the server when it offers it (its own command,
  // at the first quiet moment after login).
  bool compress_upstream = false;
  // Asked before each LOGIN / AUTHENTICATE goes to the server and told how it went
  // (the login penalty); null: logins go at once. Must outlive the session.
  LoginGate* login_gate = nullptr;
};

// A rule asked to hold one direction's messages for a while.
struct DelayRequest {
  policy::Direction direction = policy::Direction::Server;
  std::chrono::milliseconds duration{0};
};

class Session {
 public:
  explicit Session(const SessionSettings& settings);

  // Consume what can be consumed now; input keeps the rest (client: while blocked).
  void feed_client(std::string_view& input);
  void feed_server(std::string_view& input);

  // Bytes to write to each leg, in order. The relay drains them.
  std::string& to_client() { return to_client_; }
  std::string& to_server() { return to_server_; }

  // The client waits for the server (literal "+", IDLE, AUTHENTICATE step): don't read it.
  bool client_blocked() const;
  // The client's STARTTLS was accepted: write to_client(), drop client bytes read
  // before the handshake (never plaintext after STARTTLS), handshake, then call
  // client_tls_started().
  bool client_tls_requested() const { return client_tls_requested_; }
  void client_tls_started();
  // The client's COMPRESS DEFLATE was accepted: the first client_compress_offset()
  // bytes of to_client() go out as they are, everything after them compressed; the
  // client's bytes after its COMPRESS line are compressed. Client input is not
  // consumed until the relay has set up both streams and called client_compress_started().
  bool client_compress_requested() const { return client_compress_requested_; }
  std::size_t client_compress_offset() const { return client_compress_offset_; }
  void client_compress_started();
  // The server accepted the proxy's own COMPRESS DEFLATE: what the server sends after
  // its OK (held by the relay) is compressed, and so must be everything the relay
  // writes to it from now on. Server input waits for server_compress_started().
  bool server_compress_requested() const { return server_compress_ == UpstreamCompress::Accepted; }
  void server_compress_started();
  bool server_compressed() const { return server_compress_ == UpstreamCompress::Active; }
  // The server accepted the client's COMPRESS, passed through: from the end of its OK
  // (in to_client()) on, both legs carry one compressed stream each, end to end. The
  // relay forwards them unchanged and calls pass_through_started(); then the session
  // observes inflated copies of both streams, changes nothing and queues nothing (a
  // copy of the plaintext would cost more than the inflating).
  bool pass_through_accepted() const { return pass_through_ == PassThrough::Accepted; }
  void pass_through_started();
  bool observing() const { return pass_through_ == PassThrough::Active; }
  // Set when the session must end once to_client() is written.
  std::optional<CloseReason> close_requested() const { return close_; }
  // Nothing of a server message is half-forwarded: a line may be added for the client.
  bool server_between_messages() const { return !server_in_message_; }
  bool client_between_messages() const { return !client_in_message_; }
  // Bytes of plain IMAP the server will certainly send next, before it can stop (the
  // rest of a literal); 0 when unknown.
  std::uint64_t server_bytes_coming() const { return decoders_ ? decoders_->responses.literal_remaining() : 0; }
  // A rule delays a message: the relay calls resume(direction) after the duration.
  // Meanwhile that direction's input is not consumed (it stays with the relay).
  std::optional<DelayRequest> take_delay_request();
  void resume(policy::Direction direction);
  // The client's commands are held back (a rule's delay, the login penalty): the
  // server owes nothing for what it hasn't seen.
  bool commands_held() const { return commands_paused_; }
  // Queues a line for the client at the next server message boundary (BYE on
  // shutdown); nothing while observing a passed-through stream.
  void send_to_client(std::string_view line);
  // Frees the buffers an idle session doesn't need (the relay calls it before it
  // waits for more input), the decoders too when both are between messages. Views of
  // earlier events end here.
  void release_memory();
  bool holds_decoders() const { return decoders_ != nullptr; }

  const imap::SessionState& state() const { return state_; }
  const ClientLegView& client_leg() const { return settings_.client_leg; }
  std::uint64_t commands_forwarded() const { return commands_forwarded_; }
  // Who the client is, from its first tagged command on (upgraded by a later ID).
  const identify::ClientInfo& client() const { return identifier_.info(); }
  // Who watches this session (metrics); null: nobody. Must outlive the session.
  void set_observer(Observer* observer) { observer_ = observer; }
  // Rule hits of this session, per rule name in order of first hit.
  const std::vector<std::pair<std::string, std::uint32_t>>& rule_hits() const;
  // Guesses of the client's family that rules acted on and that turned out wrong.
  const std::vector<policy::OverturnedGuess>& overturned_guesses() const;

 private:
  void on_client_message(std::string_view raw);
  bool answer_locally(const imap::Command& command);
  void reject(const imap::Command& command);
  void answer(std::string_view tag, imap::Status status, std::string_view text);
  void answer_compress(const imap::Command& command);
  bool pass_compress_through(const imap::Command& command);
  void note_pass_through_answer(const imap::Response& response);
  // The proxy itself holds the client's input back (STARTTLS, a COMPRESS switch).
  bool client_blocked_by_proxy() const {
    return client_tls_requested_ || client_compress_requested_ || server_compress_ == UpstreamCompress::Sent ||
           server_compress_ == UpstreamCompress::Accepted || pass_through_ == PassThrough::Requested ||
           pass_through_ == PassThrough::Accepted;
  }
  // COMPRESS towards the server (upstream_compress.cpp).
  void note_server_capabilities(std::string_view list);
  void maybe_compress_upstream();
  bool own_compress_answer(const imap::Response& response);
  void forward_server_message(std::string_view raw);
  void observe_response(const imap::Response& response);
  void flush_deferred();
  // Rules (rule_actions.cpp).
  const policy::Verdict* judge_command(const imap::Command& command, std::string_view raw);
  const policy::Verdict* judge_response(const imap::Response& response, std::string_view raw);
  bool answer_by_rule(const imap::Command& command, const policy::Verdict& verdict);
  void send_command_bytes(std::string_view raw, bool first, bool last);
  void send_response_bytes(std::string_view raw, bool first, bool last);
  bool rewrite_capability_lists(const imap::Response& response, std::string_view raw, std::string& bytes);
  void inject(const policy::Verdict& verdict, bool before);
  void start_delay(policy::Direction direction, std::chrono::milliseconds duration);
  // The login gate (login_watch.cpp): hold a login, remember what it sent, tell the answer.
  void maybe_hold_login(const imap::Command& command);
  void watch_login(const imap::Command& command);
  void note_login_answer(const imap::Response& response);
  // Where forwarded bytes go: the leg's queue, or the hold of a delayed direction.
  std::string& command_queue() { return commands_paused_ ? effects_->held_commands : to_server_; }
  std::string& response_queue() { return responses_paused_ ? effects_->held_responses : to_client_; }
  bool renamed_pending() const { return effects_ && !effects_->renamed.empty(); }

  // A command sent under another name whose responses are translated back.
  struct Renamed {
    std::string tag;
    const policy::CommandRewrite* rewrite;
    std::shared_ptr<const policy::RuleSet> keep;  // the rule it came from stays alive
  };

  SessionSettings settings_;
  imap::SessionState state_;
  // The two decoders (0.7 KiB): made when bytes come, given back when both rest
  // between messages. All they carry from one message to the next is the stream
  // offset (SessionState holds the rest), so an idle session keeps only that.
  struct Decoders {
    Decoders(imap::SessionState& state, const SessionSettings& settings, std::uint64_t client_offset,
             std::uint64_t server_offset)
        : commands(state, *settings.client_limits, client_offset),
          responses(state, *settings.server_limits, server_offset) {}
    imap::CommandDecoder commands;
    imap::ResponseDecoder responses;
  };
  Decoders& decoders() {
    if (!decoders_) decoders_ = std::make_unique<Decoders>(state_, settings_, client_offset_, server_offset_);
    return *decoders_;
  }
  imap::CommandDecoder& commands() { return decoders().commands; }
  imap::ResponseDecoder& responses() { return decoders().responses; }
  std::unique_ptr<Decoders> decoders_;
  std::uint64_t client_offset_ = 0, server_offset_ = 0;  // where decoders made again resume
  identify::Identifier identifier_;
  std::string to_client_;
  std::string to_server_;
  std::string deferred_client_;  // local answers waiting for a server message boundary
  bool suppress_client_message_ = false;  // the current client message is not forwarded
  bool server_in_message_ = false;        // part of the current server message went out already
  bool client_in_message_ = false;        // part of the current client message was seen already
  bool drop_server_message_ = false;      // a rule dropped the current server message
  std::optional<imap::ErrorCode> client_error_;
  bool client_tls_requested_ = false;
  bool client_compress_requested_ = false;
  // Off (not offered, or not wanted), Offered, Sent (our COMPRESS is in flight),
  // Accepted (the relay is to switch), Active, Refused.
  enum class UpstreamCompress : std::uint8_t { Off, Offered, Sent, Accepted, Active, Refused };
  UpstreamCompress server_compress_ = UpstreamCompress::Off;
  std::size_t client_compress_offset_ = 0;
  bool server_offers_compress_ = false;  // COMPRESS=DEFLATE in the server's last capability list
  // The client's COMPRESS passed through: Requested (sent, its tag below), Accepted
  // (the relay is to switch), Active (observing only); Refused by the server: the
  // proxy answers a later COMPRESS itself.
  enum class PassThrough : std::uint8_t { Off, Requested, Accepted, Active, Refused };
  PassThrough pass_through_ = PassThrough::Off;
  std::string pass_through_tag_;
  std::optional<CloseReason> close_;
  std::uint64_t commands_forwarded_ = 0;

  Observer* observer_ = nullptr;
  std::uint32_t identity_reported_ = 0;  // identifier revision last told to the observer
  std::unique_ptr<policy::SessionRules> rules_;    // null: no rules configured
  const policy::Verdict* command_verdict_ = nullptr;   // rules that hit the current client message
  const policy::Verdict* response_verdict_ = nullptr;  // ... the current server message
  // Delays: a paused direction queues its output in effects_ and consumes no input.
  bool commands_paused_ = false;   // the client's commands are held from the server
  bool responses_paused_ = false;  // the server's responses are held from the client
  // What rules that rename, delay or thin leave behind, made when one first does:
  // most sessions (and every idle one without such a rule) never need it.
  struct RuleEffects {
    std::vector<Renamed> renamed;
    std::string held_commands;
    std::string held_responses;
    std::optional<DelayRequest> delay_requests[2];  // by direction, until the relay takes them
    std::chrono::steady_clock::time_point keepalive_forwarded{};  // the last line a thinning rule let through
    bool holds_nothing() const {
      return renamed.empty() && held_commands.empty() && held_responses.empty() && !delay_requests[0] &&
             !delay_requests[1] && keepalive_forwarded == std::chrono::steady_clock::time_point{};
    }
  };
  RuleEffects& effects() {
    if (!effects_) effects_ = std::make_unique<RuleEffects>();
    return *effects_;
  }
  std::unique_ptr<RuleEffects> effects_;
  // The login in flight, while the gate waits for its answer; made per login only.
  struct LoginInFlight {
    std::string tag;
    std::uint64_t credentials = 0;  // the gate's keyed digest, never the credentials
    bool sasl = false;              // AUTHENTICATE: the client's SASL lines are folded in too
  };
  std::unique_ptr<LoginInFlight> login_;
};

}  // namespace imapscope::session
