#include "proxy/transport/proxy.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "proxy/transport/health_check.hpp"
#include "proxy/transport/listen_address.hpp"
#include "proxy/transport/listener_setup.hpp"
#include "proxy/transport/router.hpp"
#include "proxy/transport/service_notify.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

std::uint64_t descriptors_in_use() {
  std::uint64_t count = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++count;
  }
  return count;
}

// Unset limits (0) are derived here, once the listeners are open: the total from the
// descriptor limit (two per session), the pre-login total half of it, so that clients
// not logged in can never take the places of those who are.
guard::GuardSettings resolve_guard(guard::GuardSettings g) {
  rlimit nofile{};
  const std::uint64_t descriptors = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                                        ? nofile.rlim_cur
                                        : 1'048'576;
  const auto in_use = descriptors_in_use();
  auto& l = g.limits;
  if (l.max_sessions == 0) l.max_sessions = guard::sessions_for_descriptors(descriptors, in_use);
  if (l.max_prelogin == 0) l.max_prelogin = std::max<std::size_t>(1, l.max_sessions / 2);
  util::log_line(util::LogLevel::Info,
                 "event=limits max_sessions=" + std::to_string(l.max_sessions) + " max_prelogin=" +
                     std::to_string(l.max_prelogin) + " max_prelogin_per_address=" +
                     std::to_string(l.max_prelogin_per_address) + " descriptor_limit=" + std::to_string(descriptors) +
                     " descriptors_in_use=" + std::to_string(in_use) +
                     " login_penalty=" + (g.penalty.enabled ? "on" : "off"));
  return g;
}

}  // namespace

Proxy::Proxy(const ProxySettings& settings) : settings_(settings) {
  const unsigned threads = settings.threads ? settings.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    loops_.push_back(std::make_unique<Loop>());
    loops_.back()->registry.active = &active_;
  }

  if (settings_.routing.enabled()) set_up_routing();
  for (const auto& listener : settings_.listeners) {
    auto runtime = std::make_unique<ListenerRuntime>();
    runtime->routing = routing_.get();
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
                       " upstream=" + (routing_ ? std::string("routed")
                                       : listener.upstream.addresses.empty() ? ""
                                                                              : listener.upstream.addresses[0].to_string()) +
                       " upstream_tls=" +
                       (listener.upstream.tls == UpstreamTls::Implicit ? "implicit"
                        : listener.upstream.tls == UpstreamTls::Starttls ? "starttls"
                                                                         : "none"));
    runtimes_.push_back(std::move(runtime));
  }
  // Once every listener is open: what they and the loops hold is known.
  guard_ = std::make_unique<guard::Guard>(resolve_guard(settings_.guard));
  for (auto& runtime : runtimes_) runtime->guard = guard_.get();
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
    notify_reloading();
    reload_rules();
    reload_certificates();
    reload_routes();
    notify_ready();
  }
  draining_ = true;
  notify_stopping();
  if (health_) health_->stop();
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

asio::awaitable<void> Proxy::report_refusals() {
  asio::steady_timer timer(loops_.front()->io);
  auto& refusals = guard_->refusals();
  for (;;) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(kNoThrow);
    if (ec) co_return;
    for (const auto& line : refusals.due(std::chrono::steady_clock::now())) {
      log_limit_refusal(line, refusals.interval(), true);
    }
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
  start_health_checks();
  asio::co_spawn(loops_.front()->io, handle_signals(), asio::detached);
  asio::co_spawn(loops_.front()->io, report_refusals(), asio::detached);
  // Posted after the accept loops: it runs once they wait on their sockets.
  asio::post(loops_.front()->io, [] { notify_ready(); });
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
