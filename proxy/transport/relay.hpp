// One client connection, proxied. The set-up (client TLS, upstream connection) is a
// coroutine whose frame is gone once the session runs; from then on the relay is
// driven by callbacks: each leg has at most one pending wait for readability and
// one for writability, and update() does everything that can be done now (feed the
// Session, write what it queued, read more). An idle session is this object and two
// small pending waits: coroutine frames would cost 3-4 KiB per session more.
//
// Everything ends cooperatively: whoever sees the end first records why and stops
// the reads; the writes then flush what each leg must still get (the server's last
// bytes, a BYE) within a bounded time, and the relay removes itself from its loop's
// registry once no handler of it is pending.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include "proxy/compress/deflate.hpp"
#include "proxy/guard/guard.hpp"
#include "proxy/session/session.hpp"
#include "proxy/transport/client_address.hpp"
#include "proxy/transport/routing.hpp"
#include "proxy/transport/server_tls.hpp"
#include "proxy/transport/settings.hpp"
#include "proxy/transport/stream.hpp"

namespace imapscope::transport {

// What a listener's sessions share: settings and TLS contexts (read-only).
struct ListenerRuntime {
  ListenerSettings settings;
  Timeouts timeouts;
  imap::DecoderLimits client_limits;
  imap::DecoderLimits server_limits;
  const identify::Signatures* signatures = nullptr;  // null: built in
  const policy::RuleStore* rules = nullptr;          // null: no rules
  session::Telemetry* telemetry = nullptr;           // null: no metrics
  guard::Guard* guard = nullptr;                     // limits before login, login penalty; null: none
  std::string tls_mode;                              // "implicit", "starttls" or "none" (a metric label)
  std::shared_ptr<ServerTls> client_tls;             // our certificates; null: no TLS on the client leg
  std::shared_ptr<asio::ssl::context> upstream_tls;  // null: plain upstream
  // Routing mode: each login is looked up and goes to its backend (settings.upstream
  // is not used); null: transparent mode.
  const RoutingRuntime* routing = nullptr;
};

class Relay;

// One line for refusals by a limit before login (the first of an interval, or the sum
// of those that followed it).
void log_limit_refusal(const guard::RefusalLog::Line& line, std::chrono::seconds interval, bool summary);

// The relays of one event loop; only that loop's thread touches it.
struct RelayRegistry {
  std::list<std::unique_ptr<Relay>> relays;
  std::atomic<std::size_t>* active = nullptr;  // sessions of every loop, for the drain
};

class Relay final : private session::LoginGate {
 public:
  Relay(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Creates a relay owned by the registry and starts it; it removes itself when done.
  static void launch(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id,
                     RelayRegistry& registry);
  // The drain period is over: end with "* BYE" at the next message boundary.
  void shutdown();
  // Ends the session when a timeout ran out: idle (neither side sent anything),
  // login (not authenticated yet) or server response (the server owes an answer).
  void check_timeouts(std::chrono::steady_clock::time_point now);
  // Routing mode: whether a kick names this session (its user or its backend), and
  // the kick itself: "* BYE [UNAVAILABLE] reason" at the next message boundary.
  bool kick_matches(const route::KickRequest& request) const;
  void kick(std::string_view reason);
  std::uint64_t id() const { return id_; }

 private:
  class EvictHandle;
  // Asked before anything is spent on the client (upstream, TLS); false: refused
  // (the client got a BYE). The guard may evict the oldest pre-login session for it.
  asio::awaitable<bool> admit();
  void evict();  // on this relay's thread
  void note_refusal(std::string_view reason);
  void leave_guard();  // an admitted session is over: the guard counts it no more
  void drop_evict_handle();
  // session::LoginGate: the login penalty of the client's address.
  std::chrono::milliseconds login_delay() override;
  std::uint64_t fold_credentials(std::uint64_t so_far, std::string_view piece) const override;
  void login_failed(std::uint64_t credentials) override;
  void login_succeeded() override;

  // Routing mode (relay_route.cpp): the pre-login server stands in for the server
  // until a backend took the login.
  struct RouteState;
  void start_routing(std::string_view balancer_peer);
  bool route_prelogin();  // the pre-login server's turn; true if anything moved
  asio::awaitable<void> route_login();  // lookup, backend, replay
  void route_login_answered(bool ok);
  void maybe_release_backend();
  void maybe_kick();
  void leave_backend();  // the backend pool counts this session no more
  bool route_unavailable_answer() const;

  using CloseReason = session::CloseReason;
  enum class Side : std::uint8_t { Client, Server };

  struct Leg {
    std::string held;  // read from this leg, not yet consumed (the session is blocked)
    std::string out;   // being written to this leg, taken whole from the session's queue
    std::size_t out_done = 0;
    bool read_waiting = false;
    bool write_waiting = false;
    bool dead = false;  // writes to it would fail
    std::uint32_t low_water = 1;  // bytes the socket holds before a read wait ends
    // The client's COMPRESS was passed through: what is read from this leg goes to the
    // other unchanged, and the inflated copy is only inspected.
    bool pass_through = false;
    // COMPRESS=DEFLATE on this leg: what is read is inflated into held (bounded per
    // step, the rest waits in compressed), what is written is deflated into out.
    // Made when the leg turns compressed: most never do.
    struct Compression {
      std::unique_ptr<compress::Inflater> inflater;
      std::unique_ptr<compress::Deflater> deflater;  // none when passed through
      std::string compressed;
    };
    std::unique_ptr<Compression> compression;
    compress::Inflater* inflater() const { return compression ? compression->inflater.get() : nullptr; }
    compress::Deflater* deflater() const { return compression ? compression->deflater.get() : nullptr; }
    bool has_compressed() const { return compression && !compression->compressed.empty(); }
  };

  asio::awaitable<bool> set_up();  // PROXY header, client TLS, upstream; false: the session is over
  asio::awaitable<bool> receive_proxy_header();  // false: the connection is refused
  void start_session(bool plaintext_login_trusted, bool hide_greeting_capabilities);
  void start_telemetry();
  asio::awaitable<bool> client_handshake();
  void begin(std::exception_ptr error, bool started);

  void update();
  bool pump(Side side);
  // Runs update() once the leg's socket is ready; *waiting is set meanwhile.
  void wait(Side side, Stream::Wait wanted, bool Leg::*waiting);
  void tune_low_water(Side side);
  static CloseReason leg_error(Side side) {
    return side == Side::Client ? CloseReason::ClientError : CloseReason::ServerError;
  }
  bool feed_held();
  void flush(Side side);
  void maybe_start_client_tls();
  static void start_inflating(Leg& l);
  static void compress_leg(Leg& l);
  void start_client_compression(std::string& queue);
  void maybe_start_server_compression();
  void maybe_start_pass_through();
  void say_bye(std::string_view line);
  bool inflate_some(Side side);  // false: the stream is broken (the session ends)
  void finish_ending();
  void end(CloseReason reason);
  // Ends for a reason whose cause is known (session_end's cause=, the transcript's).
  void end_with_cause(CloseReason reason, std::string_view cause, std::string detail = {});
  void leg_failed(Side side, const asio::error_code& ec);
  void leg_ended(Side side, const asio::error_code& ec);  // the peer ended its stream
  void close_legs();
  void maybe_finish();
  void post_update();
  void trim_buffers();
  void start_delays();
  void log_rule_hits();
  void log_end() const;

  Stream& stream(Side side) { return side == Side::Client ? client_ : *server_; }
  Leg& leg(Side side) { return side == Side::Client ? client_leg_ : server_leg_; }
  static Side other(Side side) { return side == Side::Client ? Side::Server : Side::Client; }
  std::string& queue_for(Side side) { return side == Side::Client ? session_->to_client() : session_->to_server(); }
  std::size_t unwritten(Side side);  // bytes queued or being written to this leg
  bool may_read(Side side);
  bool written(Side side);  // nothing more to write to this leg (or it can't take it)
  bool server_owes_answer();  // a whole command is in flight and only the server can move

  const ListenerRuntime& listener_;
  std::uint64_t id_;
  RelayRegistry* registry_ = nullptr;
  std::list<std::unique_ptr<Relay>>::iterator self_;
  std::unique_ptr<ClientAddresses> client_addresses_;  // the real client's, until the upstream is connected
  std::string client_peer_;           // its source, "ip:port"
  Stream client_;
  std::unique_ptr<Stream> server_;
  std::string server_peer_;
  std::unique_ptr<session::Observer> observer_;  // before session_: it outlives the session
  std::optional<session::Session> session_;
  Leg client_leg_;
  Leg server_leg_;
  std::unique_ptr<asio::steady_timer> final_flush_;  // only while ending with bytes to write
  std::unique_ptr<asio::steady_timer> delays_[2];    // only while a rule delays commands / responses
  std::uint16_t pending_ = 0;                         // handlers of this relay not yet run (a few at most)
  bool client_tls_in_progress_ = false;
  bool update_posted_ = false;
  std::uint8_t rule_hits_logged_ = 0;  // rules whose first hit in this session was logged
  std::uint8_t overturned_logged_ = 0;  // overturned guesses of the client logged
  bool shutdown_requested_ = false;
  bool evict_requested_ = false;  // evicted while still setting up
  bool admitted_ = false;         // the guard counts this session until leave_guard()
  bool prelogin_ = false;         // admitted and not logged in yet
  // Packed with the address key's nine bytes into what the flags above leave of a
  // word (an idle session is mostly this object).
  bool closing_ = false;   // sockets closed: waiting for pending handlers only
  bool finished_ = false;  // removal posted
  bool telemetry_started_ = false;  // session_started was called: session_ended must follow
  std::optional<CloseReason> ending_;
  guard::AddressKey address_key_;  // the client's, as the guard counts it
  std::shared_ptr<EvictHandle> evict_handle_;  // while pre-login only
  // Why a leg failed, when more is known than the reason (made then: an idle session
  // keeps one pointer, not 48 bytes for a cause it may never have).
  struct EndCause {
    std::string_view cause;  // static text
    std::string detail;      // the system's or OpenSSL's words
  };
  std::unique_ptr<EndCause> end_cause_;
  std::unique_ptr<RouteState> route_;  // routing mode only
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_activity_;
  std::chrono::steady_clock::time_point last_server_read_;
  // When a timeout check first saw the server owing an answer; unset while it doesn't.
  // (The clock's epoch, boot time, is never "now": it stands for unset.)
  std::chrono::steady_clock::time_point server_owes_since_{};
  std::uint64_t bytes_from_client_ = 0;
  std::uint64_t bytes_from_server_ = 0;
};

}  // namespace imapscope::transport
