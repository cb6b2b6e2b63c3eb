// One client connection, proxied: the coroutine that owns both legs. Two readers
// feed the socket-free Session (the client's runs in run() itself); a writer per leg
// runs only while that leg has bytes queued, so an idle session is two suspended
// readers and this object (each extra coroutine would cost 1-3 KiB per session). The idle timeout is checked by the
// proxy's per-loop sweep (check_idle). Everything ends cooperatively: whoever sees
// the end first records why and stops the reads; the writers then flush what their
// leg must still get (the server's last bytes, a BYE), so no message is cut off.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/steady_timer.hpp>

#include "proxy/session/session.hpp"
#include "proxy/transport/settings.hpp"
#include "proxy/transport/stream.hpp"

namespace imapscope::transport {

// What a listener's sessions share: settings and TLS contexts (read-only).
struct ListenerRuntime {
  ListenerSettings settings;
  Timeouts timeouts;
  imap::DecoderLimits client_limits;
  imap::DecoderLimits server_limits;
  std::shared_ptr<asio::ssl::context> client_tls;    // our certificate; null: no TLS on the client leg
  std::shared_ptr<asio::ssl::context> upstream_tls;  // null: plain upstream
};

// Wakes coroutines waiting on it; a waiter re-checks its condition after waking.
class Signal {
 public:
  explicit Signal(const asio::any_io_executor& executor);
  asio::awaitable<void> wait();
  void notify() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
};

class Relay {
 public:
  Relay(asio::ip::tcp::socket client, const ListenerRuntime& listener, std::uint64_t id);
  asio::awaitable<void> run();
  // The drain period is over: end with "* BYE" at the next message boundary.
  void shutdown();
  // Ends the session when neither side sent anything for the idle timeout.
  void check_idle(std::chrono::steady_clock::time_point now);

 private:
  using CloseReason = session::CloseReason;

  asio::awaitable<bool> start();  // client TLS, upstream; false: the session is over
  asio::awaitable<void> client_reader();
  asio::awaitable<void> server_reader();
  asio::awaitable<void> client_writer();
  asio::awaitable<void> server_writer();
  asio::awaitable<asio::error_code> write_out(Stream& stream, std::string& out);
  asio::awaitable<bool> client_starttls();
  struct Finished;
  void spawn(asio::awaitable<void> task);  // a reader or writer; it counts itself out (Finished)
  void kick_writers();  // starts a leg's writer when it has bytes queued and none runs
  void feed_held();
  void end(CloseReason reason);
  void wake_all();
  void log_end() const;

  const ListenerRuntime& listener_;
  std::uint64_t id_;
  std::string client_peer_;
  Stream client_;
  std::unique_ptr<Stream> server_;
  std::string server_peer_;
  std::optional<session::Session> session_;
  std::string held_client_;  // read, not yet consumed (the client waits for the server)
  std::string held_server_;  // read, not yet consumed (the client leg is switching to TLS)
  std::string out_client_;   // being written
  std::string out_server_;
  // One signal for every change a coroutine may wait for (bytes fed, a queue
  // drained, a writer or reader finished): waiters re-check their own condition,
  // and each extra steady_timer would cost ~120 bytes per session.
  Signal changed_;
  unsigned running_ = 0;  // spawned readers and writers still running
  bool client_tls_in_progress_ = false;
  bool client_writer_running_ = false;
  bool server_writer_running_ = false;
  bool client_dead_ = false;  // writes to it would fail
  bool server_dead_ = false;
  std::optional<CloseReason> ending_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_activity_;
  std::uint64_t bytes_from_client_ = 0;
  std::uint64_t bytes_from_server_ = 0;
};

}  // namespace imapscope::transport
