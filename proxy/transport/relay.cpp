#include "proxy/transport/relay.hpp"
#include "proxy/transport/no_throw.hpp"

#include <algorithm>

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/ssl/error.hpp>
#include <asio/this_coro.hpp>

#include "proxy/transport/leg_failure.hpp"
#include "proxy/transport/relay_route_state.hpp"
#include "proxy/transport/upstream.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
// Bytes queued for a leg before the other leg's reads stop: backpressure that keeps
// memory bounded when one side reads slower than the other writes.
constexpr std::size_t kHighWater = 256 * 1024;
constexpr auto kFinalFlush = std::chrono::seconds(5);
// A session that always has input yields its thread to the loop's other sessions
// after at most kPassesPerTurn x 2 legs x kReadsPerPump reads (up to 32 KiB each
// plain, 128 KiB TLS).
constexpr int kReadsPerPump = 8;
constexpr int kPassesPerTurn = 4;
// Read low-water mark inside a server literal (see tune_low_water).
constexpr std::uint64_t kMaxLowWater = 128 * 1024;
constexpr std::uint64_t kLowWaterMargin = 17 * 1024;  // a TLS record and its overhead
// Plaintext inflated from a compressed leg per step: a small compressed read can
// inflate a thousandfold, and the session takes it in steps like ordinary reads.
constexpr std::size_t kInflateStep = 64 * 1024;

bool is_eof(const asio::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

// Moves what the session consumes from held; true if it took anything.
template <typename Feed>
bool feed_from(std::string& held, Feed&& feed) {
  std::string_view input = held;
  const auto before = input.size();
  feed(input);
  const auto consumed = before - input.size();
  held.erase(0, consumed);
  return consumed > 0;
}

}  // namespace

Relay::Relay(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id)
    : listener_(listener),
      id_(id),
      client_addresses_(std::make_unique<ClientAddresses>(addresses_of(client))),
      client_peer_(client_addresses_->source()),
      client_(std::move(client)) {}

Relay::~Relay() {
  leave_guard();
  leave_backend();
}

void Relay::launch(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id,
                   RelayRegistry& registry) {
  Relay& relay = *registry.relays.emplace_back(std::make_unique<Relay>(std::move(client), listener, id));
  relay.registry_ = &registry;
  relay.self_ = std::prev(registry.relays.end());
  ++*registry.active;
  relay.started_ = relay.last_activity_ = relay.last_server_read_ = Clock::now();
  ++relay.pending_;
  asio::co_spawn(relay.client_.socket().get_executor(), relay.set_up(),
                 [&relay](std::exception_ptr error, bool started) { relay.begin(error, started); });
}

void Relay::start_telemetry() {
  if (!listener_.telemetry) return;
  observer_ = listener_.telemetry->session_started(
      session::SessionStart{listener_.settings.name, listener_.tls_mode, id_, client_peer_});
  telemetry_started_ = true;
}

asio::awaitable<bool> Relay::receive_proxy_header() {
  auto read = co_await transport::receive_proxy_header(client_.socket(), listener_.settings.proxy_trusted,
                                                       listener_.timeouts.tls_handshake);
  const auto outcome = proxy_header_outcome_name(read.outcome);
  if (listener_.telemetry) listener_.telemetry->proxy_header(outcome);
  if (read.outcome != ProxyHeaderOutcome::Accepted && read.outcome != ProxyHeaderOutcome::Local) {
    // A balancer's TCP health check connects and closes: not worth a warning.
    const auto level = read.outcome == ProxyHeaderOutcome::Closed ? util::LogLevel::Info : util::LogLevel::Warning;
    util::log_line(level, "event=proxy_header_refused session=" + std::to_string(id_) +
                                                " listener=" + listener_.settings.name + " result=" +
                                                std::string(outcome) + " detail=" + util::log_quote(read.error) +
                                                " peer=" + client_peer_);
    co_return false;
  }
  *client_addresses_ = std::move(read.addresses);
  client_peer_ = client_addresses_->source();
  co_return true;
}

void Relay::shutdown() {
  if (!session_) {
    shutdown_requested_ = true;  // still setting up: ends as soon as it runs
    return;
  }
  if (closing_) return;
  end(CloseReason::Shutdown);
  update();
}

void Relay::check_timeouts(Clock::time_point now) {
  if (!session_ || ending_) return;
  const auto& timeouts = listener_.timeouts;
  const auto& state = session_->state();
  if (server_ && server_leg_.low_water > 1) {
    // Under a low-water mark a slow server's bytes wait in the socket unread: they
    // are activity all the same.
    asio::error_code ignored;
    if (server_->socket().available(ignored) > 0) last_activity_ = last_server_read_ = now;
  }
  if (now - last_activity_ >= timeouts.idle) {
    end(CloseReason::IdleTimeout);
  } else if (state.protocol_state() == imap::ProtocolState::NotAuthenticated && now - started_ >= timeouts.login) {
    end(CloseReason::LoginTimeout);
  } else if (!server_owes_answer()) {
    server_owes_since_ = {};
    return;
  } else {
    if (server_owes_since_ == Clock::time_point{}) server_owes_since_ = now;
    if (now - std::max(server_owes_since_, last_server_read_) < timeouts.server_response) return;
    end(CloseReason::ServerTimeout);
  }
  update();
}

bool Relay::server_owes_answer() {
  // Routing mode before a backend: the lookup and the backend's connection are bounded themselves.
  if (!server_) return false;
  const auto& state = session_->state();
  if (state.pending().empty() || session_->commands_held()) return false;
  // The client's turn: a literal's payload, DONE, a SASL response.
  const auto input = state.client_input();
  if (input != imap::ClientInput::Commands && input != imap::ClientInput::AwaitingServer) return false;
  // The proxy itself stopped reading the server (a slow client, a rule's delay).
  return unwritten(Side::Client) < kHighWater && server_leg_.held.empty() && !server_leg_.has_compressed();
}

asio::awaitable<bool> Relay::set_up() {
  // Who sent the PROXY header, for the start line only: kept in this frame (gone
  // once the session runs), not in every idle session.
  std::string balancer_peer;
  if (listener_.settings.proxy_protocol) {
    balancer_peer = client_peer_;
    const bool accepted = co_await receive_proxy_header();  // not in the if: g++ 12 miscompiles that
    if (!accepted) co_return false;
  }
  // Before anything is spent on the client: the session starts once it is admitted.
  const bool admitted = co_await admit();
  if (!admitted) co_return false;
  start_telemetry();
  const std::string session_field = "session=" + std::to_string(id_);
  util::log_line(util::LogLevel::Info, "event=session_start " + session_field + " listener=" + listener_.settings.name +
                                           " client=" + client_peer_ +
                                           (balancer_peer.empty() ? "" : " via=" + balancer_peer));
  auto executor = co_await asio::this_coro::executor;
  if (listener_.settings.implicit_tls) {
    asio::steady_timer timer(executor, listener_.timeouts.tls_handshake);
    const auto tls = listener_.client_tls->current();  // a reload may swap it meanwhile
    auto result = co_await (client_.accept_tls(tls.get()) || timer.async_wait(kNoThrow));
    const bool failed = result.index() == 1 || std::get<0>(result);
    if (listener_.telemetry) {
      listener_.telemetry->tls_handshake(true, !failed, failed ? "" : client_.tls_version(), client_.tls_resumed());
    }
    if (failed) {
      ending_ = CloseReason::ClientTlsFailed;
      const auto detail = result.index() == 1 ? std::string("timed out") : std::get<0>(result).message();
      util::log_line(util::LogLevel::Info, "event=session_end " + session_field + " reason=client_tls_failed detail=" +
                                               util::log_quote(detail) + " client=" + client_peer_);
      co_return false;
    }
  }

  // Judged on the real client's address (after a PROXY header), before it is dropped.
  const bool plaintext_login_trusted =
      listener_.settings.plaintext_login == PlaintextLogin::Allow ||
      (listener_.settings.plaintext_login == PlaintextLogin::Loopback && client_addresses_->source_is_loopback());
  if (listener_.routing) {
    start_routing(balancer_peer);
    start_session(plaintext_login_trusted, false);
    co_return true;
  }
  const auto connect_started = Clock::now();
  auto upstream = co_await connect_upstream(listener_.settings.upstream, listener_.upstream_tls.get(), listener_.timeouts,
                                            *client_addresses_, id_);
  client_addresses_.reset();  // named to the upstream (PROXY header) if at all: not needed again
  if (auto* telemetry = listener_.telemetry) {
    telemetry->upstream_connected(upstream.stream != nullptr,
                                  std::chrono::duration<double>(Clock::now() - connect_started).count());
    if (listener_.upstream_tls && (upstream.stream || upstream.failure == CloseReason::UpstreamTlsFailed)) {
      telemetry->tls_handshake(false, upstream.stream != nullptr, upstream.stream ? upstream.stream->tls_version() : "",
                               upstream.stream && upstream.stream->tls_resumed());
    }
  }
  if (!upstream.stream) {
    ending_ = upstream.failure;
    util::log_line(util::LogLevel::Warning, "event=upstream_failed " + session_field + " reason=" +
                                                std::string(session::close_reason_name(upstream.failure)) +
                                                " detail=" + util::log_quote(upstream.error));
    // The client hears that the server is away, not why (that is in the log).
    asio::steady_timer timer(executor, kFinalFlush);
    (void)co_await (client_.write_all("* BYE [UNAVAILABLE] The mail server is not available\r\n") ||
                    timer.async_wait(kNoThrow));
    util::log_line(util::LogLevel::Info, "event=session_end " + session_field + " reason=" +
                                             std::string(session::close_reason_name(upstream.failure)) +
                                             " client=" + client_peer_);
    co_return false;
  }
  server_ = std::move(upstream.stream);
  server_peer_ = upstream.peer;
  if (!upstream.notice.empty()) {
    util::log_line(util::LogLevel::Warning, "event=upstream_notice " + session_field + " detail=" +
                                                util::log_quote(upstream.notice));
  }

  start_session(plaintext_login_trusted, upstream.did_starttls);
  server_leg_.held = std::move(upstream.greeting);
  co_return true;
}

void Relay::start_session(bool plaintext_login_trusted, bool hide_greeting_capabilities) {
  session::SessionSettings settings;
  settings.client_limits = &listener_.client_limits;  // the listener outlives its relays
  settings.server_limits = &listener_.server_limits;
  settings.client_leg.tls = client_.is_tls();
  settings.client_leg.starttls_available = !listener_.settings.implicit_tls && listener_.client_tls != nullptr;
  settings.client_leg.login_disabled_until_tls = settings.client_leg.starttls_available && !plaintext_login_trusted;
  settings.client_leg.compress_offered = listener_.settings.compress != ClientCompress::Off;
  settings.client_leg.compress_pass_through = listener_.settings.compress == ClientCompress::PassThrough;
  settings.compress_upstream = !listener_.routing && listener_.settings.upstream.compress;
  settings.hide_greeting_capabilities = hide_greeting_capabilities;
  settings.signatures = listener_.signatures;
  settings.rules = listener_.rules;
  if (listener_.guard || listener_.routing) settings.login_gate = this;
  session_.emplace(settings);
  session_->set_observer(observer_.get());
}

void Relay::begin(std::exception_ptr error, bool started) {
  --pending_;
  if (error) {
    // Nothing in the set-up throws on purpose (out of memory would): this session ends.
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    util::log_line(util::LogLevel::Warning, "event=session_end session=" + std::to_string(id_) +
                                                " reason=internal_error cause=exception cause_detail=" +
                                                util::log_quote(what) + " client=" + client_peer_);
    session_.reset();
  }
  if (error || !started) {
    closing_ = true;
    client_.close();
    if (server_) server_->close();
    maybe_finish();
    return;
  }
  if (shutdown_requested_) {
    end(CloseReason::Shutdown);
  } else if (evict_requested_) {
    end(CloseReason::Evicted);
  }
  update();
}

// Does everything that can be done now. Called by every completion handler and
// never from inside itself, so no step runs re-entrantly.
void Relay::update() {
  if (closing_ || !session_) {
    maybe_finish();
    return;
  }
  for (int pass = 1;; ++pass) {
    // Feeding one side can release the other (a "+", a tagged result), and writing
    // can lift backpressure: go round until nothing moves.
    bool moved = feed_held();
    flush(Side::Client);
    flush(Side::Server);
    if (route_ && !server_) moved = route_prelogin() || moved;
    maybe_start_client_tls();
    moved = pump(Side::Client) || moved;
    moved = pump(Side::Server) || moved;
    if (!moved) break;
    if (pass == kPassesPerTurn) {
      post_update();
      break;
    }
  }
  if (route_ && server_) {
    maybe_release_backend();
    maybe_kick();
  }
  if (prelogin_ && session_->state().protocol_state() != imap::ProtocolState::NotAuthenticated) {
    prelogin_ = false;  // logged in (or PREAUTH, or LOGOUT): no longer counts before login
    listener_.guard->admissions().logged_in(id_);
    drop_evict_handle();  // never evicted from now on: an idle session keeps no handle
  }
  // A read that found nothing may still have made OpenSSL answer (a key update).
  if (client_.has_unsent()) flush(Side::Client);
  if (server_ && server_->has_unsent()) flush(Side::Server);
  if (ending_) {
    finish_ending();
  } else {
    start_delays();
    log_rule_hits();
    trim_buffers();
  }
  maybe_finish();
}

void Relay::start_delays() {
  while (auto request = session_->take_delay_request()) {
    const auto direction = request->direction;
    auto& timer = delays_[direction == policy::Direction::Client ? 0 : 1];
    if (!timer) timer = std::make_unique<asio::steady_timer>(client_.socket().get_executor());
    timer->expires_after(request->duration);
    ++pending_;
    timer->async_wait([this, direction](const asio::error_code& ec) {
      --pending_;
      if (!ec && !closing_) {
        session_->resume(direction);
        // The delay is over; its timer is not kept (the handler holds no reference to it).
        delays_[direction == policy::Direction::Client ? 0 : 1].reset();
      }
      update();
    });
  }
}

void Relay::log_rule_hits() {
  // Rules that acted on a guess of the client's family that turned out wrong.
  const auto& overturned = session_->overturned_guesses();
  for (; overturned_logged_ < overturned.size() && overturned_logged_ < UINT8_MAX; ++overturned_logged_) {
    const auto& o = overturned[overturned_logged_];
    std::string rules;
    for (const auto& rule : o.rules) rules += (rules.empty() ? "" : ",") + rule;
    util::log_line(util::LogLevel::Warning,
                   "event=guess_overturned session=" + std::to_string(id_) + " guessed=" + o.guessed +
                       " identified=" + o.identified + " by=" + std::string(identify::id_method_name(o.method)) +
                       " client_name=" + util::log_quote(session_->client().id_name) + " rules_acted=" + rules);
  }
  const auto& hits = session_->rule_hits();
  // The first hit of each rule in a session is logged; the counts come with session_end.
  for (; rule_hits_logged_ < hits.size() && rule_hits_logged_ < UINT8_MAX; ++rule_hits_logged_) {
    const auto& client = session_->client();
    util::log_line(util::LogLevel::Info, "event=rule_hit session=" + std::to_string(id_) +
                                             " rule=" + hits[rule_hits_logged_].first +
                                             " client_family=" + client.family +
                                             " client_version=" + util::log_quote(client.version));
  }
}

std::size_t Relay::unwritten(Side side) {
  const Leg& l = leg(side);
  // Routing mode before a backend: the pre-login server's input is what waits.
  if (side == Side::Server && !server_) return queue_for(side).size();
  return l.out.size() - l.out_done + queue_for(side).size() + stream(side).unsent_bytes();
}

bool Relay::may_read(Side side) {
  const Leg& l = leg(side);
  if (ending_ || l.read_waiting || !l.held.empty() || l.has_compressed()) return false;
  if (side == Side::Server) return server_ && unwritten(Side::Client) < kHighWater;
  return !client_tls_in_progress_ && !session_->client_tls_requested() && !session_->client_compress_requested() &&
         unwritten(Side::Server) < kHighWater;
}

bool Relay::pump(Side side) {
  Leg& l = leg(side);
  bool moved = false;
  for (int reads = 0; reads < kReadsPerPump && may_read(side); ++reads) {
    auto result = stream(side).read_some();
    if (result.wait != Stream::Wait::None) {
      if (result.wait == Stream::Wait::Readable) tune_low_water(side);
      wait(side, result.wait, &Leg::read_waiting);
      return moved;
    }
    const auto end_of_stream = [&] { is_eof(result.ec) ? leg_ended(side, result.ec) : leg_failed(side, result.ec); };
    if (result.ec && result.data.empty()) {
      end_of_stream();
      return moved;
    }
    moved = true;
    last_activity_ = Clock::now();
    if (side == Side::Server) last_server_read_ = last_activity_;
    std::string_view input = result.data;  // the thread's read buffer: consumed or copied here
    if (listener_.telemetry) listener_.telemetry->bytes(side == Side::Client, input.size());
    (side == Side::Client ? bytes_from_client_ : bytes_from_server_) += input.size();
    if (l.inflater()) {
      // Compressed: inflated into held a step at a time, then fed like held bytes.
      if (l.pass_through) queue_for(other(side)).append(input);
      l.compression->compressed.append(input);
      if (!inflate_some(side)) return moved;
      feed_held();
    } else {
      if (side == Side::Client) {
        session_->feed_client(input);
      } else {
        session_->feed_server(input);
      }
      if (!input.empty()) l.held.assign(input);
      if (side == Side::Server) feed_held();  // the client may have been waiting for this
    }
    flush(Side::Client);
    flush(Side::Server);
    if (auto close = session_->close_requested()) end(*close);
    if (result.ec) {
      end_of_stream();  // after the bytes that came before it
      return moved;
    }
  }
  return moved;
}

void Relay::wait(Side side, Stream::Wait wanted, bool Leg::*waiting) {
  leg(side).*waiting = true;
  ++pending_;
  stream(side).wait(wanted, [this, side, waiting](const asio::error_code& ec) {
    --pending_;
    Leg& l = leg(side);
    l.*waiting = false;
    if (ec && ec != asio::error::operation_aborted && !closing_) {
      // A failed wait for writing also means the leg can't take what is queued.
      if (waiting == &Leg::write_waiting) l.dead = true;
      leg_failed(side, ec);
    }
    update();
  });
}

// While the server sends a large literal, the read wait ends only once a good part
// of the rest is there, not at every TLS record (Dovecot writes 4 KiB ones): each
// wake-up costs a sleep, a wake and a smaller write to the client. Safe because the
// server sends those bytes whatever happens (it never waits inside a literal), and
// an end of the stream wakes the wait anyway. Without a known literal: 1 byte.
void Relay::tune_low_water(Side side) {
  Leg& l = leg(side);
  std::uint64_t coming = 0;
  if (side == Side::Server && !l.inflater()) coming = session_->server_bytes_coming();
  // OpenSSL may hold part of a record of the rest already.
  std::uint32_t wanted = 1;
  if (coming > 2 * kLowWaterMargin) {
    wanted = static_cast<std::uint32_t>(std::min<std::uint64_t>(kMaxLowWater, coming - kLowWaterMargin));
  }
  if (wanted == l.low_water) return;
  l.low_water = wanted;
  stream(side).set_read_low_water(wanted);
}

bool Relay::inflate_some(Side side) {
  Leg& l = leg(side);
  auto& z = *l.compression;
  std::string_view input = z.compressed;
  if (!z.inflater->inflate(input, l.held, kInflateStep)) {
    util::log_line(util::LogLevel::Info, "event=compress_error session=" + std::to_string(id_) + " side=" +
                                             (side == Side::Client ? "client" : "server") +
                                             " detail=" + util::log_quote(z.inflater->error()));
    z.compressed.clear();
    l.held.clear();
    end_with_cause(side == Side::Client ? CloseReason::ProtocolError : CloseReason::ServerError, "inflate",
                   z.inflater->error());
    return false;
  }
  z.compressed.erase(0, z.compressed.size() - input.size());
  return true;
}

bool Relay::feed_held() {
  maybe_start_server_compression();
  maybe_start_pass_through();
  bool fed = false;
  for (bool moved = true; moved;) {
    moved = false;
    for (Side side : {Side::Server, Side::Client}) {
      Leg& l = leg(side);
      // The session took all plaintext so far: inflate the next step.
      if (l.held.empty() && l.has_compressed() && !ending_) {
        if (!inflate_some(side)) return fed;
        moved = !l.held.empty() || moved;
      }
    }
    if (!server_leg_.held.empty()) {
      moved = feed_from(server_leg_.held, [&](std::string_view& in) { session_->feed_server(in); }) || moved;
    }
    if (!client_leg_.held.empty() && !session_->client_tls_requested() && !session_->client_compress_requested()) {
      moved = feed_from(client_leg_.held, [&](std::string_view& in) { session_->feed_client(in); }) || moved;
    }
    fed = fed || moved;
  }
  if (fed) {
    if (auto close = session_->close_requested()) end(*close);
  }
  return fed;
}

void Relay::flush(Side side) {
  if (side == Side::Server && !server_) return;  // routing mode: the pre-login server takes it (route_prelogin)
  Leg& l = leg(side);
  if (l.dead || l.write_waiting || (side == Side::Client && client_tls_in_progress_)) return;
  std::string& queue = queue_for(side);
  for (;;) {
    if (l.out_done == l.out.size()) {
      // The whole queue is taken at once, so the session appends to an empty one
      // while these bytes are written.
      l.out.clear();
      l.out_done = 0;
      if (queue.empty()) {
        // TLS records the socket didn't take yet go out on their own.
        if (!stream(side).has_unsent()) return;
      } else if (side == Side::Client && session_->client_compress_requested()) {
        start_client_compression(queue);
      } else if (auto* deflater = l.deflater()) {
        deflater->compress(queue, l.out);
        queue.clear();
      } else {
        l.out.swap(queue);
      }
    }
    auto result = stream(side).write_some(std::string_view(l.out).substr(l.out_done));
    l.out_done += result.written;
    if (result.ec) {
      l.dead = true;
      leg_failed(side, result.ec);
      return;
    }
    if (result.wait != Stream::Wait::None) {
      wait(side, result.wait, &Leg::write_waiting);
      return;
    }
  }
}

bool Relay::written(Side side) {
  if (leg(side).dead || (side == Side::Client && client_tls_in_progress_)) return true;
  if (side == Side::Server && !server_) return true;  // nothing is written to the pre-login server
  return unwritten(side) == 0;
}

// From now on what is read from the leg is inflated; what was read and not fed to
// the session yet came after the COMPRESS exchange: compressed too.
void Relay::start_inflating(Leg& l) {
  l.compression = std::make_unique<Leg::Compression>();
  l.compression->inflater = std::make_unique<compress::Inflater>();
  l.compression->compressed.swap(l.held);
  l.held.clear();
}

// ... and what is written to it is deflated.
void Relay::compress_leg(Leg& l) {
  start_inflating(l);
  l.compression->deflater = std::make_unique<compress::Deflater>();
}

// The queue holds the tagged OK to the client's COMPRESS (and what came before it)
// in clear, then what must already be compressed. The client's bytes after its
// COMPRESS line, held since, are compressed too.
void Relay::start_client_compression(std::string& queue) {
  const std::size_t clear = std::min(session_->client_compress_offset(), queue.size());
  client_leg_.out.assign(queue, 0, clear);
  compress_leg(client_leg_);
  client_leg_.deflater()->compress(std::string_view(queue).substr(clear), client_leg_.out);
  queue.clear();
  session_->client_compress_started();
  util::log_line(util::LogLevel::Info, "event=client_compress session=" + std::to_string(id_) + " mechanism=deflate");
}

// The server accepted the proxy's COMPRESS: what it sent after its OK is held, and
// compressed, like everything it sends from now on; what is written to it next is
// compressed (the COMPRESS command itself went out in clear before the OK came).
void Relay::maybe_start_server_compression() {
  if (!session_->server_compress_requested() || server_leg_.inflater()) return;
  compress_leg(server_leg_);
  session_->server_compress_started();
  util::log_line(util::LogLevel::Info, "event=server_compress session=" + std::to_string(id_) + " mechanism=deflate");
}

// The server accepted the client's COMPRESS (its OK is queued for the client, in
// clear): from here on each leg carries one compressed stream, end to end. What was
// read after the switch and held is compressed already, and goes on like the rest.
void Relay::maybe_start_pass_through() {
  if (!session_->pass_through_accepted() || client_leg_.pass_through) return;
  for (Side side : {Side::Client, Side::Server}) {
    Leg& l = leg(side);
    queue_for(other(side)).append(l.held);
    start_inflating(l);
    l.pass_through = true;
  }
  session_->pass_through_started();
  util::log_line(util::LogLevel::Info,
                 "event=compress_pass_through session=" + std::to_string(id_) + " mechanism=deflate");
}

// A line of the proxy's own for the client (a BYE as the session ends).
void Relay::say_bye(std::string_view line) {
  if (!server_leg_.pass_through) {
    session_->send_to_client(line);
    return;
  }
  // The client inflates the server's stream: the line goes in as a block of its own,
  // which fits only between the server's blocks, once the client has all the server
  // sent. Nothing of the server's follows it (the session is ending).
  if (!session_->server_between_messages() || !server_leg_.held.empty() || server_leg_.has_compressed() ||
      !server_leg_.inflater()->at_block_boundary()) {
    return;
  }
  compress::append_stored_block(line, queue_for(Side::Client));
  if (observer_) observer_->proxy_to_client(line);
}

void Relay::maybe_start_client_tls() {
  if (client_tls_in_progress_ || ending_ || !session_->client_tls_requested()) return;
  // The OK goes out in plaintext first; nothing else may write during the handshake.
  if (!written(Side::Client)) return;
  client_leg_.held.clear();  // plaintext pipelined after STARTTLS is never read
  client_tls_in_progress_ = true;
  ++pending_;
  asio::co_spawn(client_.socket().get_executor(), client_handshake(), [this](std::exception_ptr error, bool upgraded) {
    --pending_;
    client_tls_in_progress_ = false;
    if (listener_.telemetry && !error) {
      listener_.telemetry->tls_handshake(true, upgraded, upgraded ? client_.tls_version() : "", client_.tls_resumed());
    }
    if (!closing_) {
      if (error || !upgraded) {
        client_leg_.dead = true;
        end(CloseReason::ClientTlsFailed);
      } else {
        session_->client_tls_started();
        if (observer_) observer_->client_tls_started(client_.tls_version());
      }
    }
    update();
  });
}

asio::awaitable<bool> Relay::client_handshake() {
  asio::steady_timer timer(co_await asio::this_coro::executor, listener_.timeouts.tls_handshake);
  const auto tls = listener_.client_tls->current();  // a reload may swap it meanwhile
  auto result = co_await (client_.accept_tls(tls.get()) || timer.async_wait(kNoThrow));
  co_return result.index() == 0 && !std::get<0>(result);
}

void Relay::end_with_cause(CloseReason reason, std::string_view cause, std::string detail) {
  if (ending_) return;
  if (!cause.empty() || !detail.empty()) end_cause_ = std::make_unique<EndCause>(EndCause{cause, std::move(detail)});
  end(reason);
}

void Relay::leg_failed(Side side, const asio::error_code& ec) {
  auto failure = describe_leg_failure(ec);
  end_with_cause(leg_error(side), failure.cause, std::move(failure.detail));
}

// An end of the stream is a close; one inside a message (a literal cut short) says so.
void Relay::leg_ended(Side side, const asio::error_code& ec) {
  const bool client = side == Side::Client;
  const bool mid_message = client ? !session_->client_between_messages() : !session_->server_between_messages();
  const auto reason = client ? CloseReason::ClientClosed : CloseReason::ServerClosed;
  if (!mid_message) {
    end(reason);
  } else {
    end_with_cause(reason, "eof_mid_message",
                   ec == asio::ssl::error::stream_truncated ? "no TLS close_notify" : std::string());
  }
}

void Relay::end(CloseReason reason) {
  if (ending_) return;
  ending_ = reason;
  switch (reason) {
    case CloseReason::ServerClosed:
    case CloseReason::ServerError:
    case CloseReason::ServerTimeout:
      server_leg_.dead = true;
      // A BYE only where it can't cut a server message in two.
      if (session_->server_between_messages() &&
          session_->state().protocol_state() != imap::ProtocolState::Logout) {
        say_bye(reason == CloseReason::ServerTimeout ? "* BYE [UNAVAILABLE] The mail server stopped responding\r\n"
                                                     : "* BYE [UNAVAILABLE] Connection to the mail server lost\r\n");
      }
      break;
    case CloseReason::LoginTimeout:
      say_bye("* BYE Login timed out\r\n");
      break;
    case CloseReason::IdleTimeout:
      say_bye("* BYE Autologout; idle for too long\r\n");
      break;
    case CloseReason::Shutdown:
      say_bye("* BYE [UNAVAILABLE] Server shutting down\r\n");
      break;
    case CloseReason::Evicted:
      say_bye("* BYE [UNAVAILABLE] Too many clients are logging in; try again later\r\n");
      break;
    case CloseReason::ClientError:
    case CloseReason::ClientTlsFailed:
      client_leg_.dead = true;
      break;
    default:
      break;
  }
  for (Side side : {Side::Client, Side::Server}) {
    if (!leg(side).dead) continue;
    queue_for(side).clear();
    leg(side).out.clear();
    leg(side).out_done = 0;
  }
  client_.stop_reading();
  if (server_) server_->stop_reading();
}

void Relay::finish_ending() {
  flush(Side::Client);
  flush(Side::Server);
  if (written(Side::Client) && written(Side::Server)) {
    close_legs();
    return;
  }
  if (final_flush_) return;
  // The last bytes (the server's, a BYE) get a bounded chance.
  final_flush_ = std::make_unique<asio::steady_timer>(client_.socket().get_executor(), kFinalFlush);
  ++pending_;
  final_flush_->async_wait([this](const asio::error_code& ec) {
    --pending_;
    if (!ec && !closing_) client_leg_.dead = server_leg_.dead = true;
    update();
  });
}

void Relay::close_legs() {
  closing_ = true;
  client_.close();
  if (server_) server_->close();
  if (final_flush_) final_flush_->cancel();
  for (auto& timer : delays_) {
    if (timer) timer->cancel();
  }
}

void Relay::maybe_finish() {
  if (!closing_ || pending_ > 0 || finished_) return;
  finished_ = true;
  leave_guard();  // its place is free from now on, as its log line says
  leave_backend();
  if (session_) log_end();
  if (observer_) {
    observer_->session_closed(ending_.value_or(CloseReason::ClientClosed),
                              end_cause_ ? session::CloseCause{end_cause_->cause, end_cause_->detail} : session::CloseCause{});
  }
  if (listener_.telemetry && telemetry_started_) {
    listener_.telemetry->session_ended(listener_.settings.name, listener_.tls_mode,
                                       ending_.value_or(CloseReason::ClientClosed),
                                       std::chrono::duration<double>(Clock::now() - started_).count());
  }
  // Not now: the caller is one of this relay's own functions.
  asio::post(client_.socket().get_executor(), [registry = registry_, self = self_] {
    registry->relays.erase(self);
    --*registry->active;
  });
}

void Relay::post_update() {
  if (update_posted_) return;
  update_posted_ = true;
  ++pending_;
  asio::post(client_.socket().get_executor(), [this] {
    --pending_;
    update_posted_ = false;
    update();
  });
}

void Relay::trim_buffers() {
  // An idle session keeps no buffers: freeing costs an allocation per burst of
  // traffic, not per message.
  session_->release_memory();
  for (Leg* l : {&client_leg_, &server_leg_}) {
    if (l->held.empty()) std::string().swap(l->held);
    if (l->out.empty()) std::string().swap(l->out);
    if (!l->compression) continue;
    if (l->compression->compressed.empty()) std::string().swap(l->compression->compressed);
    // The deflate state (~70 KiB) is rebuilt for the next burst; the stream goes on.
    if (l->deflater() && l->out.empty()) l->deflater()->release();
  }
}

void Relay::log_end() const {
  std::string rule_hits;
  for (const auto& [rule, count] : session_->rule_hits()) {
    rule_hits += (rule_hits.empty() ? " rule_hits=" : ",") + rule + ":" + std::to_string(count);
  }
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
  auto compress_mode = [](const Leg& l) -> std::string {
    return l.pass_through ? "pass-through" : l.inflater() ? "deflate" : "none";
  };
  util::log_line(util::LogLevel::Info,
                 "event=session_end session=" + std::to_string(id_) +
                     " reason=" + std::string(session::close_reason_name(ending_.value_or(CloseReason::ClientClosed))) +
                     (end_cause_ && !end_cause_->cause.empty() ? " cause=" + std::string(end_cause_->cause) : "") +
                     (end_cause_ && !end_cause_->detail.empty() ? " cause_detail=" + util::log_quote(end_cause_->detail) : "") +
                     " duration_ms=" + std::to_string(duration) + " client=" + client_peer_ + " server=" + server_peer_ +
                     " client_tls=" + client_.tls_version() + " server_tls=" + (server_ ? server_->tls_version() : std::string("none")) +
                     " client_compress=" + compress_mode(client_leg_) + " server_compress=" + compress_mode(server_leg_) +
                     " bytes_from_client=" + std::to_string(bytes_from_client_) +
                     " bytes_from_server=" + std::to_string(bytes_from_server_) +
                     " commands=" + std::to_string(session_->commands_forwarded()) +
                     " client_family=" + session_->client().family +
                     " client_version=" + util::log_quote(session_->client().version) +
                     " client_id=" + std::string(identify::id_method_name(session_->client().method)) +
                     // The name from ID: how an "other" client is told apart (never a label).
                     (session_->client().id_name.empty() ? std::string()
                                                         : " client_name=" + util::log_quote(session_->client().id_name)) +
                     " state=" + std::string(imap::protocol_state_name(session_->state().protocol_state())) +
                     rule_hits);
}

}  // namespace imapscope::transport
