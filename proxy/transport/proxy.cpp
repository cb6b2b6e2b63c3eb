#include "proxy/transport/proxy.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <csignal>
#include <stdexcept>
#include <thread>

#include "proxy/transport/listen_address.hpp"
#include "proxy/transport/listener_setup.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {

Proxy::Proxy(const ProxySettings& settings) : settings_(settings) {
  const unsigned threads = settings.threads ? settings.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    loops_.push_back(std::make_unique<Loop>());
    loops_.back()->registry.active = &active_;
  }

  for (const auto& listener : settings_.listeners) {
    auto runtime = std::make_unique<ListenerRuntime>();
    runtime->settings = listener;
    runtime->timeouts = settings_.timeouts;
    runtime->client_limits = settings_.client_limits;
    runtime->server_limits = settings_.server_limits;
    runtime->signatures = settings_.signatures.get();
    runtime->rules = settings_.rules.get();
    runtime->telemetry = settings_.telemetry.get();
    runtime->tls_mode = listener_tls_mode(listener);
    auto prepared = prepare_listener(listener);
    runtime->client_tls = std::move(prepared.client_tls);
    runtime->upstream_tls = std::move(prepared.upstream_tls);
    if (runtime->upstream_tls && !listener.upstream.verify) {
      util::log_line(util::LogLevel::Warning, "event=config listener=" + listener.name +
                                                  " warning=\"upstream certificate NOT verified (--upstream-insecure):"
                                                  " anyone on the path can read and change this traffic\"");
    }
    // Every loop accepts on the same port; a port 0 is fixed by the first bind.
    auto endpoint = prepared.endpoint;
    for (std::size_t i = 0; i < bound_.size(); ++i) {
      // Both would join one SO_REUSEPORT group and split the connections.
      if (endpoint.port() != 0 && bound_[i] == endpoint) {
        throw std::runtime_error("listener " + listener.name + ": same address as listener " +
                                 settings_.listeners[i].name + " (" + listener.listen.to_string() + ")");
      }
    }
    ensure_address_free(endpoint, listener.name);
    if (!runtime->client_tls && reachable_beyond_this_machine(endpoint.address())) {
      util::log_line(util::LogLevel::Warning,
                     "event=config listener=" + listener.name +
                         " warning=\"plain listener without a certificate on a non-loopback address: passwords"
                         " cross the network in clear (give --tls-cert/--tls-key to offer STARTTLS)\"");
    }
    for (auto& loop : loops_) {
      loop->acceptors.push_back(open_shared_acceptor(loop->io, endpoint, listener.name));
      endpoint = loop->acceptors.back().local_endpoint();
    }
    bound_.push_back(endpoint);
    util::log_line(util::LogLevel::Info,
                   "event=listening listener=" + listener.name + " address=" + endpoint.address().to_string() + ":" +
                       std::to_string(endpoint.port()) + " tls=" +
                       (listener.implicit_tls ? "implicit" : runtime->client_tls ? "starttls" : "none") +
                       " upstream=" + (listener.upstream.addresses.empty() ? "" : listener.upstream.addresses[0].to_string()) +
                       " upstream_tls=" +
                       (listener.upstream.tls == UpstreamTls::Implicit ? "implicit"
                        : listener.upstream.tls == UpstreamTls::Starttls ? "starttls"
                                                                         : "none"));
    runtimes_.push_back(std::move(runtime));
  }
}

Proxy::~Proxy() = default;

asio::awaitable<void> Proxy::accept_loop(asio::ip::tcp::acceptor& acceptor, const ListenerRuntime& runtime, Loop& loop) {
  asio::steady_timer backoff(loop.io);
  // Out of descriptors, every retry fails: one line per 10 s says how many did.
  std::uint64_t failures = 0;
  std::chrono::steady_clock::time_point last_logged{};
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Out of file descriptors or memory: the connection waits in the backlog while
      // this loop waits instead of spinning, then tries again.
      ++failures;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_logged >= std::chrono::seconds(10)) {
        util::log_line(util::LogLevel::Warning, "event=accept_failed listener=" + runtime.settings.name +
                                                    " error=" + util::log_quote(ec.message()) +
                                                    " failures=" + std::to_string(failures) + " retry_ms=100");
        failures = 0;
        last_logged = now;
      }
      backoff.expires_after(std::chrono::milliseconds(100));
      (void)co_await backoff.async_wait(kNoThrow);
      continue;
    }
    asio::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    Relay::launch(std::move(socket), runtime, next_id_++, loop.registry);
  }
}

void Proxy::reload_rules() {
  if (!settings_.rules) {
    util::log_line(util::LogLevel::Info, "event=reload result=nothing_to_reload");
    return;
  }
  // Read on this loop's thread: a rule directory loads in milliseconds. Sessions
  // pick up the new set at their next message; a failed load changes nothing.
  const auto outcome = settings_.rules->reload();
  if (settings_.telemetry) settings_.telemetry->reload(outcome.ok);
  if (outcome.ok) {
    util::log_line(util::LogLevel::Info, "event=reload result=ok rules=" + std::to_string(outcome.rules) +
                                             " generation=" + std::to_string(settings_.rules->generation()));
  } else {
    util::log_line(util::LogLevel::Error, "event=reload result=failed failures=" +
                                              std::to_string(settings_.rules->reload_failures()) +
                                              " error=" + util::log_quote(outcome.error));
  }
}

void Proxy::reload_certificates() {
  // New handshakes take the new context; running sessions keep the one they started
  // with. A certificate or key that doesn't load leaves the listener as it was.
  for (const auto& runtime : runtimes_) {
    if (!runtime->client_tls) continue;
    const auto listener = "event=tls_reload listener=" + runtime->settings.name;
    try {
      runtime->client_tls->reload();
      util::log_line(util::LogLevel::Info, listener + " result=ok certificates=" +
                                               std::to_string(runtime->client_tls->certificate_count()) +
                                               " earliest_expiry=" + std::to_string(runtime->client_tls->earliest_expiry()));
    } catch (const std::exception& e) {
      util::log_line(util::LogLevel::Error,
                     listener + " result=failed kept=previous error=" + util::log_quote(e.what()));
    }
  }
}

std::vector<ListenerTlsStatus> Proxy::tls_status() const {
  std::vector<ListenerTlsStatus> out;
  for (const auto& runtime : runtimes_) {
    if (const auto& tls = runtime->client_tls) {
      out.push_back({runtime->settings.name, tls->earliest_expiry(), tls->reloads(true), tls->reloads(false)});
    }
  }
  return out;
}

asio::awaitable<void> Proxy::handle_signals() {
  auto& io = loops_.front()->io;
  asio::signal_set signals(io, SIGTERM, SIGINT, SIGHUP);
  int signal = 0;
  for (;;) {
    auto [ec, received] = co_await signals.async_wait(kNoThrow);
    if (ec) co_return;
    if (received != SIGHUP) {
      signal = received;
      break;
    }
    reload_rules();
    reload_certificates();
  }
  draining_ = true;
  util::log_line(util::LogLevel::Info, "event=drain signal=" + std::to_string(signal) + " sessions=" +
                                           std::to_string(active_.load()) + " grace_ms=" +
                                           std::to_string(settings_.timeouts.shutdown_grace.count()));
  for (auto& loop : loops_) {
    asio::post(loop->io, [&l = *loop] {
      for (auto& acceptor : l.acceptors) {
        asio::error_code ignored;
        acceptor.close(ignored);
      }
    });
  }
  asio::steady_timer timer(io);
  const auto deadline = std::chrono::steady_clock::now() + settings_.timeouts.shutdown_grace;
  while (active_ > 0 && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(50));
    (void)co_await timer.async_wait(kNoThrow);
  }
  if (active_ > 0) {
    util::log_line(util::LogLevel::Info, "event=drain_timeout sessions=" + std::to_string(active_.load()));
    for (auto& loop : loops_) {
      asio::post(loop->io, [&l = *loop] {
        for (auto& relay : l.registry.relays) relay->shutdown();
      });
    }
    // Each session writes its BYE within a bounded time.
    const auto hard_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (active_ > 0 && std::chrono::steady_clock::now() < hard_deadline) {
      timer.expires_after(std::chrono::milliseconds(50));
      (void)co_await timer.async_wait(kNoThrow);
    }
  }
  for (auto& loop : loops_) loop->io.stop();
}

asio::awaitable<void> Proxy::sweep_idle(Loop& loop) {
  // One timer per loop instead of one per session: idle sessions stay cheap.
  asio::steady_timer timer(loop.io);
  // A quarter of the shortest timeout: each fires at most 25 % late.
  const auto& t = settings_.timeouts;
  const auto shortest = std::min({t.idle, t.login, t.server_response});
  const auto period = std::clamp<std::chrono::steady_clock::duration>(shortest / 4, std::chrono::milliseconds(100),
                                                                      std::chrono::seconds(30));
  for (;;) {
    timer.expires_after(period);
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec) co_return;
    const auto now = std::chrono::steady_clock::now();
    // check_timeouts() may end a session, which removes itself from the list later, not now.
    for (auto& relay : loop.registry.relays) relay->check_timeouts(now);
  }
}

int Proxy::run() {
  // OpenSSL writes to sockets with write(2): a peer that has gone must be an error
  // code, not a SIGPIPE that ends the process.
  std::signal(SIGPIPE, SIG_IGN);
  for (std::size_t l = 0; l < loops_.size(); ++l) {
    auto& loop = *loops_[l];
    for (std::size_t i = 0; i < runtimes_.size(); ++i) {
      asio::co_spawn(loop.io, accept_loop(loop.acceptors[i], *runtimes_[i], loop), asio::detached);
    }
    asio::co_spawn(loop.io, sweep_idle(loop), asio::detached);
  }
  asio::co_spawn(loops_.front()->io, handle_signals(), asio::detached);
  std::vector<std::thread> threads;
  for (std::size_t l = 1; l < loops_.size(); ++l) {
    threads.emplace_back([&io = loops_[l]->io] { io.run(); });
  }
  loops_.front()->io.run();
  for (auto& loop : loops_) loop->io.stop();
  for (auto& t : threads) t.join();
  util::log_line(util::LogLevel::Info, "event=stopped");
  return 0;
}

}  // namespace imapscope::transport
