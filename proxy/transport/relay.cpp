#include "proxy/transport/relay.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl/error.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include "proxy/transport/upstream.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// Bytes queued for a leg before the other leg's reads stop: backpressure that keeps
// memory bounded when one side reads slower than the other writes.
constexpr std::size_t kHighWater = 256 * 1024;
// Write buffers above this are released after each write: an idle session keeps
// nothing of its largest transfer.
constexpr std::size_t kKeepWriteBuffer = 4 * 1024;
constexpr auto kFinalFlush = std::chrono::seconds(5);
constexpr auto kWatchdogPeriod = std::chrono::seconds(30);

bool is_eof(const asio::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

std::string peer_of(const asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

// Moves what the session consumes from held; true if it took anything.
template <typename Feed>
bool feed_from(std::string& held, Feed&& feed) {
  std::string_view input = held;
  const auto before = input.size();
  feed(input);
  const auto consumed = before - input.size();
  held.erase(0, consumed);
  if (held.empty() && held.capacity() > 256) std::string().swap(held);
  return consumed > 0;
}

}  // namespace

Signal::Signal(const asio::any_io_executor& executor) : timer_(executor, asio::steady_timer::time_point::max()) {}

asio::awaitable<void> Signal::wait() { (void)co_await timer_.async_wait(kNoThrow); }

Relay::Relay(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id)
    : listener_(listener),
      id_(id),
      client_peer_(peer_of(client)),
      client_(std::move(client)),
      progress_(client_.socket().get_executor()),
      client_wake_(client_.socket().get_executor()),
      server_wake_(client_.socket().get_executor()),
      drained_(client_.socket().get_executor()),
      watchdog_timer_(client_.socket().get_executor()) {}

void Relay::shutdown() {
  shutdown_ = true;
  watchdog_timer_.cancel();
}

void Relay::wake_all() {
  progress_.notify();
  client_wake_.notify();
  server_wake_.notify();
  drained_.notify();
}

asio::awaitable<void> Relay::run() {
  started_ = last_activity_ = Clock::now();
  const std::string session_field = "session=" + std::to_string(id_);
  util::log_line(util::LogLevel::Info, "event=session_start " + session_field + " listener=" + listener_.settings.name +
                                           " client=" + client_peer_);
  auto executor = co_await asio::this_coro::executor;
  if (listener_.settings.implicit_tls) {
    asio::steady_timer timer(executor, listener_.timeouts.tls_handshake);
    auto result = co_await (client_.accept_tls(listener_.client_tls->native_handle()) || timer.async_wait(kNoThrow));
    if (result.index() == 1 || std::get<0>(result)) {
      const auto detail = result.index() == 1 ? std::string("timed out") : std::get<0>(result).message();
      util::log_line(util::LogLevel::Info, "event=session_end " + session_field + " reason=client_tls_failed detail=" +
                                               util::log_quote(detail) + " client=" + client_peer_);
      client_.close();
      co_return;
    }
  }

  auto upstream = co_await connect_upstream(listener_.settings.upstream, listener_.upstream_tls.get(), listener_.timeouts);
  if (!upstream.stream) {
    util::log_line(util::LogLevel::Warning, "event=upstream_failed " + session_field + " reason=" +
                                                std::string(session::close_reason_name(upstream.failure)) +
                                                " detail=" + util::log_quote(upstream.error));
    // The client hears that the server is away, not why (that is in the log).
    asio::steady_timer timer(executor, kFinalFlush);
    (void)co_await (client_.write_all("* BYE [UNAVAILABLE] The mail server is not available\r\n") ||
                    timer.async_wait(kNoThrow));
    client_.close();
    util::log_line(util::LogLevel::Info, "event=session_end " + session_field + " reason=" +
                                             std::string(session::close_reason_name(upstream.failure)) +
                                             " client=" + client_peer_);
    co_return;
  }
  server_ = std::move(upstream.stream);
  server_peer_ = upstream.peer;

  session::SessionSettings settings;
  settings.client_limits = listener_.client_limits;
  settings.server_limits = listener_.server_limits;
  settings.client_leg.tls = client_.is_tls();
  settings.client_leg.starttls_available = !listener_.settings.implicit_tls && listener_.client_tls != nullptr;
  settings.client_leg.login_disabled_until_tls =
      listener_.settings.login_disabled_until_tls && listener_.client_tls != nullptr;
  settings.hide_greeting_capabilities = upstream.did_starttls;
  session_.emplace(settings);
  held_server_ = std::move(upstream.greeting);
  feed_held();

  (void)co_await (client_reader() && server_reader() && client_writer() && server_writer() && watchdog());
  client_.close();
  server_->close();
  log_end();
}

void Relay::feed_held() {
  // Feeding one side can release the other (a "+", a tagged result): go round
  // until neither moves.
  for (bool moved = true; moved;) {
    moved = false;
    if (!held_server_.empty()) {
      moved = feed_from(held_server_, [&](std::string_view& in) { session_->feed_server(in); }) || moved;
    }
    if (!held_client_.empty() && !session_->client_tls_requested()) {
      moved = feed_from(held_client_, [&](std::string_view& in) { session_->feed_client(in); }) || moved;
    }
  }
  wake_all();
  if (auto close = session_->close_requested()) end(*close);
}

void Relay::end(CloseReason reason) {
  if (ending_) return;
  ending_ = reason;
  switch (reason) {
    case CloseReason::ServerClosed:
    case CloseReason::ServerError:
      server_dead_ = true;
      // A BYE only where it can't cut a server message in two.
      if (session_->server_between_messages() &&
          session_->state().protocol_state() != imap::ProtocolState::Logout) {
        session_->send_to_client("* BYE [UNAVAILABLE] Connection to the mail server lost\r\n");
      }
      break;
    case CloseReason::IdleTimeout:
      session_->send_to_client("* BYE Autologout; idle for too long\r\n");
      break;
    case CloseReason::Shutdown:
      session_->send_to_client("* BYE [UNAVAILABLE] Server shutting down\r\n");
      break;
    case CloseReason::ClientError:
    case CloseReason::ClientTlsFailed:
      client_dead_ = true;
      break;
    default:
      break;
  }
  client_.stop_reading();
  server_->stop_reading();
  watchdog_timer_.cancel();
  wake_all();
}

asio::awaitable<Relay::CloseReason> Relay::client_reader() {
  for (;;) {
    if (ending_) co_return *ending_;
    if (session_->client_tls_requested()) {
      if (!co_await client_starttls()) end(CloseReason::ClientTlsFailed);
      continue;
    }
    // The client waits for the server, or the server can't take more: read nothing.
    if (!held_client_.empty() || session_->to_server().size() >= kHighWater) {
      co_await progress_.wait();
      continue;
    }
    // The bytes are in a per-thread buffer: consumed or copied before the next wait.
    auto [ec, input] = co_await client_.read();
    if (ending_) co_return *ending_;
    if (ec) {
      end(is_eof(ec) ? CloseReason::ClientClosed : CloseReason::ClientError);
      continue;
    }
    last_activity_ = Clock::now();
    bytes_from_client_ += input.size();
    session_->feed_client(input);
    if (!input.empty()) held_client_.assign(input);
    wake_all();
    if (auto close = session_->close_requested()) end(*close);
  }
}

asio::awaitable<bool> Relay::client_starttls() {
  // The OK goes out in plaintext first; nothing else may write during the handshake.
  while (!session_->to_client().empty() || client_writing_) {
    client_wake_.notify();
    co_await drained_.wait();
    if (ending_) co_return false;
  }
  held_client_.clear();  // plaintext pipelined after STARTTLS is never read
  client_tls_in_progress_ = true;
  asio::steady_timer timer(co_await asio::this_coro::executor, listener_.timeouts.tls_handshake);
  auto result = co_await (client_.accept_tls(listener_.client_tls->native_handle()) || timer.async_wait(kNoThrow));
  client_tls_in_progress_ = false;
  if (result.index() == 1 || std::get<0>(result)) co_return false;
  session_->client_tls_started();
  feed_held();  // server bytes that arrived during the switch
  co_return true;
}

asio::awaitable<Relay::CloseReason> Relay::server_reader() {
  for (;;) {
    if (ending_) co_return *ending_;
    if (!held_server_.empty() || session_->to_client().size() >= kHighWater) {
      co_await progress_.wait();
      continue;
    }
    auto [ec, input] = co_await server_->read();
    if (ending_) co_return *ending_;
    if (ec) {
      end(is_eof(ec) ? CloseReason::ServerClosed : CloseReason::ServerError);
      continue;
    }
    last_activity_ = Clock::now();
    bytes_from_server_ += input.size();
    session_->feed_server(input);
    if (!input.empty()) held_server_.assign(input);
    feed_held();  // the client may have been waiting for this
  }
}

asio::awaitable<Relay::CloseReason> Relay::client_writer() {
  for (;;) {
    if (client_dead_) session_->to_client().clear();
    if (client_tls_in_progress_ || session_->to_client().empty()) {
      if (ending_ && !client_tls_in_progress_) co_return *ending_;
      drained_.notify();
      co_await client_wake_.wait();
      continue;
    }
    out_client_.swap(session_->to_client());
    client_writing_ = true;
    asio::error_code ec;
    if (ending_) {
      // The last bytes (the server's, a BYE) get a bounded chance.
      asio::steady_timer timer(co_await asio::this_coro::executor, kFinalFlush);
      auto result = co_await (client_.write_all(out_client_) || timer.async_wait(kNoThrow));
      ec = result.index() == 1 ? asio::error::timed_out : std::get<0>(result).first;
    } else {
      ec = (co_await client_.write_all(out_client_)).first;
    }
    client_writing_ = false;
    out_client_.clear();
    if (out_client_.capacity() > kKeepWriteBuffer) std::string().swap(out_client_);
    if (ec) {
      client_dead_ = true;
      end(CloseReason::ClientError);
    }
    wake_all();
  }
}

asio::awaitable<Relay::CloseReason> Relay::server_writer() {
  for (;;) {
    if (server_dead_) session_->to_server().clear();
    if (session_->to_server().empty()) {
      if (ending_) co_return *ending_;
      drained_.notify();
      co_await server_wake_.wait();
      continue;
    }
    out_server_.swap(session_->to_server());
    asio::error_code ec;
    if (ending_) {
      asio::steady_timer timer(co_await asio::this_coro::executor, kFinalFlush);
      auto result = co_await (server_->write_all(out_server_) || timer.async_wait(kNoThrow));
      ec = result.index() == 1 ? asio::error::timed_out : std::get<0>(result).first;
    } else {
      ec = (co_await server_->write_all(out_server_)).first;
    }
    out_server_.clear();
    if (out_server_.capacity() > kKeepWriteBuffer) std::string().swap(out_server_);
    if (ec) {
      server_dead_ = true;
      end(CloseReason::ServerError);
    }
    wake_all();
  }
}

asio::awaitable<Relay::CloseReason> Relay::watchdog() {
  const auto idle = listener_.timeouts.idle;
  for (;;) {
    if (ending_) co_return *ending_;
    watchdog_timer_.expires_after(std::min<Clock::duration>(idle, kWatchdogPeriod));
    (void)co_await watchdog_timer_.async_wait(kNoThrow);
    if (ending_) co_return *ending_;
    if (shutdown_) {
      end(CloseReason::Shutdown);
    } else if (Clock::now() - last_activity_ >= idle) {
      end(CloseReason::IdleTimeout);
    }
  }
}

void Relay::log_end() const {
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
  util::log_line(util::LogLevel::Info,
                 "event=session_end session=" + std::to_string(id_) +
                     " reason=" + std::string(session::close_reason_name(ending_.value_or(CloseReason::ClientClosed))) +
                     " duration_ms=" + std::to_string(duration) + " client=" + client_peer_ + " server=" + server_peer_ +
                     " client_tls=" + client_.tls_version() + " server_tls=" + server_->tls_version() +
                     " bytes_from_client=" + std::to_string(bytes_from_client_) +
                     " bytes_from_server=" + std::to_string(bytes_from_server_) +
                     " commands=" + std::to_string(session_->commands_forwarded()) +
                     " state=" + std::string(imap::protocol_state_name(session_->state().protocol_state())));
}

}  // namespace imapscope::transport
