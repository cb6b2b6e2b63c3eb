#include "proxy/transport/relay.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl/error.hpp>
#include <asio/this_coro.hpp>

#include "proxy/transport/upstream.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
// Bytes queued for a leg before the other leg's reads stop: backpressure that keeps
// memory bounded when one side reads slower than the other writes.
constexpr std::size_t kHighWater = 256 * 1024;
// Write buffers above this are released after each write: an idle session keeps
// nothing of its largest transfer.
constexpr std::size_t kKeepWriteBuffer = 4 * 1024;
constexpr auto kFinalFlush = std::chrono::seconds(5);

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
      changed_(client_.socket().get_executor()) {}

void Relay::shutdown() {
  if (session_) end(CloseReason::Shutdown);
}

void Relay::check_idle(Clock::time_point now) {
  if (session_ && !ending_ && now - last_activity_ >= listener_.timeouts.idle) end(CloseReason::IdleTimeout);
}

void Relay::wake_all() { changed_.notify(); }

void Relay::spawn(asio::awaitable<void> task) {
  ++running_;
  asio::co_spawn(client_.socket().get_executor(), std::move(task), asio::detached);
}

// Each spawned coroutine ends with this, on every path (no wrapper coroutine: a
// frame less per session).
struct Relay::Finished {
  Relay& relay;
  ~Finished() {
    --relay.running_;
    relay.changed_.notify();
  }
};

void Relay::kick_writers() {
  // First what the socket takes at once; a writer coroutine only for the rest.
  auto write_now = [&](Stream& stream, std::string& queue, bool& dead, CloseReason failure) {
    auto [ec, n] = stream.try_write(queue);
    queue.erase(0, n);
    if (queue.empty() && queue.capacity() > kKeepWriteBuffer) std::string().swap(queue);
    if (ec) {
      dead = true;
      end(failure);
    }
  };
  if (!client_writer_running_ && !client_tls_in_progress_ && !client_dead_ && !session_->to_client().empty()) {
    write_now(client_, session_->to_client(), client_dead_, CloseReason::ClientError);
    if (!session_->to_client().empty() && !client_dead_) {
      client_writer_running_ = true;
      spawn(client_writer());
    }
  }
  if (!server_writer_running_ && !server_dead_ && !session_->to_server().empty()) {
    write_now(*server_, session_->to_server(), server_dead_, CloseReason::ServerError);
    if (!session_->to_server().empty() && !server_dead_) {
      server_writer_running_ = true;
      spawn(server_writer());
    }
  }
}

asio::awaitable<bool> Relay::start() {
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
      co_return false;
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
    util::log_line(util::LogLevel::Info, "event=session_end " + session_field + " reason=" +
                                             std::string(session::close_reason_name(upstream.failure)) +
                                             " client=" + client_peer_);
    co_return false;
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
  co_return true;
}

asio::awaitable<void> Relay::run() {
  started_ = last_activity_ = Clock::now();
  // Set-up lives in its own frame, freed before the session's long wait. (Not
  // "if (!co_await ...)": g++ 12 miscompiles that into an illegal instruction.)
  const bool started = co_await start();
  if (!started) {
    client_.close();
    co_return;
  }
  spawn(server_reader());
  feed_held();
  // The client reader runs in this coroutine: one spawned coroutine less per session.
  co_await client_reader();
  while (running_ > 0) co_await changed_.wait();
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
  kick_writers();
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
  if (client_dead_) session_->to_client().clear();
  if (server_dead_) session_->to_server().clear();
  client_.stop_reading();
  server_->stop_reading();
  kick_writers();
  wake_all();
}

asio::awaitable<void> Relay::client_reader() {
  for (;;) {
    if (ending_) co_return;
    if (session_->client_tls_requested()) {
      const bool upgraded = co_await client_starttls();
      if (!upgraded) end(CloseReason::ClientTlsFailed);
      continue;
    }
    // The client waits for the server, or the server can't take more: read nothing.
    if (!held_client_.empty() || session_->to_server().size() >= kHighWater) {
      co_await changed_.wait();
      continue;
    }
    // An idle session keeps no buffers while it waits; freeing costs one
    // allocation per read, not per message.
    session_->release_memory();
    // The bytes are in a per-thread buffer: consumed or copied before the next wait.
    auto [ec, input] = co_await client_.read();
    if (ending_) co_return;
    if (ec) {
      end(is_eof(ec) ? CloseReason::ClientClosed : CloseReason::ClientError);
      continue;
    }
    last_activity_ = Clock::now();
    bytes_from_client_ += input.size();
    session_->feed_client(input);
    if (!input.empty()) held_client_.assign(input);
    kick_writers();
    wake_all();
    if (auto close = session_->close_requested()) end(*close);
  }
}

asio::awaitable<bool> Relay::client_starttls() {
  // The OK goes out in plaintext first; nothing else may write during the handshake.
  while (!session_->to_client().empty() || client_writer_running_) {
    kick_writers();
    co_await changed_.wait();
    if (ending_) co_return false;
  }
  held_client_.clear();  // plaintext pipelined after STARTTLS is never read
  client_tls_in_progress_ = true;
  asio::steady_timer timer(co_await asio::this_coro::executor, listener_.timeouts.tls_handshake);
  auto result =
      co_await (client_.accept_tls(listener_.client_tls->native_handle()) || timer.async_wait(kNoThrow));
  client_tls_in_progress_ = false;
  if (result.index() == 1 || std::get<0>(result)) co_return false;
  session_->client_tls_started();
  feed_held();  // server bytes that arrived during the switch
  co_return true;
}

asio::awaitable<void> Relay::server_reader() {
  Finished finished{*this};
  for (;;) {
    if (ending_) co_return;
    if (!held_server_.empty() || session_->to_client().size() >= kHighWater) {
      co_await changed_.wait();
      continue;
    }
    session_->release_memory();
    auto [ec, input] = co_await server_->read();
    if (ending_) co_return;
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

asio::awaitable<asio::error_code> Relay::write_out(Stream& stream, std::string& out) {
  asio::error_code ec;
  if (ending_) {
    // The last bytes (the server's, a BYE) get a bounded chance.
    asio::steady_timer timer(co_await asio::this_coro::executor, kFinalFlush);
    auto result = co_await (stream.write_all(out) || timer.async_wait(kNoThrow));
    ec = result.index() == 1 ? asio::error::timed_out : std::get<0>(result).first;
  } else {
    ec = (co_await stream.write_all(out)).first;
  }
  out.clear();
  if (out.capacity() > kKeepWriteBuffer) std::string().swap(out);
  co_return ec;
}

asio::awaitable<void> Relay::client_writer() {
  // Runs while the client leg has bytes queued; a new one starts when more come.
  Finished finished{*this};
  while (!client_dead_ && !client_tls_in_progress_ && !session_->to_client().empty()) {
    out_client_.swap(session_->to_client());
    const auto ec = co_await write_out(client_, out_client_);  // not in the if: see run()
    if (ec) {
      client_dead_ = true;
      end(CloseReason::ClientError);
    }
    wake_all();  // readers held back by a full queue
  }
  client_writer_running_ = false;
  changed_.notify();
}

asio::awaitable<void> Relay::server_writer() {
  Finished finished{*this};
  while (!server_dead_ && !session_->to_server().empty()) {
    out_server_.swap(session_->to_server());
    const auto ec = co_await write_out(*server_, out_server_);
    if (ec) {
      server_dead_ = true;
      end(CloseReason::ServerError);
    }
    wake_all();
  }
  server_writer_running_ = false;
  changed_.notify();
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
