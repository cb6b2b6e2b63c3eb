// Routing mode in the running proxy: the lookups (Router), the backend pool and its
// health checks, the TLS context towards backends, the map's reload on SIGHUP, and
// kicks spread over time.
#include "proxy/transport/proxy.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <future>
#include <random>
#include <unordered_set>

#include "proxy/transport/health_check.hpp"
#include "proxy/transport/router.hpp"
#include "proxy/transport/tls_context.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

// Kicked sessions whose moments fall within this of each other go in one wake-up:
// each wake-up walks the loop's sessions once.
constexpr auto kKickSlot = std::chrono::milliseconds(50);
// How long kick() waits for the loops to count their sessions.
constexpr auto kKickCountWait = std::chrono::seconds(5);

}  // namespace

void Proxy::set_up_routing() {
  const auto& r = settings_.routing;
  if (!settings_.backends) settings_.backends = std::make_shared<route::Backends>(64, r.health.fall, r.health.rise);
  RouterSettings router;
  router.http_url = r.http_url;
  router.http_timeout = r.http_timeout;
  router.map_file = r.map_file;
  router.cache_hit = r.cache_hit;
  router.cache_miss = r.cache_miss;
  router.default_tls = r.backend_tls;
  router_ = std::make_unique<Router>(router, settings_.route_telemetry.get());  // throws on a broken map
  for (const auto& backend : r.backends) settings_.backends->add(backend, true);
  for (const auto& backend : router_->map_backends()) settings_.backends->add(backend, true);
  backend_tls_ = make_client_tls_context(r.upstream_ca, r.verify);
  routing_ = std::make_unique<RoutingRuntime>();
  routing_->router = router_.get();
  routing_->backends = settings_.backends.get();
  routing_->telemetry = settings_.route_telemetry.get();
  routing_->backend_tls = backend_tls_.get();
  routing_->verify = r.verify;
  routing_->forward_client = r.forward_client;
  if (!r.master_user.empty()) routing_->master = route::MasterUser{r.master_user, r.master_password};
  routing_->capabilities = r.capabilities;
  if (!r.verify) {
    util::log_line(util::LogLevel::Warning, "event=config warning=\"backend certificates NOT verified (routing.verify"
                                            " false): anyone on the path can read and change this traffic\"");
  }
  util::log_line(util::LogLevel::Info,
                 "event=routing map=" + util::log_quote(r.map_file) + " http=" + util::log_quote(r.http_url) +
                     " backends=" + std::to_string(settings_.backends->snapshot().size()) +
                     " cache_hit_s=" + std::to_string(r.cache_hit.count()) +
                     " cache_miss_s=" + std::to_string(r.cache_miss.count()));
}

void Proxy::reload_routes() {
  if (!router_ || !router_->has_map()) return;
  std::string error;
  if (router_->reload_map(error)) {
    for (const auto& backend : router_->map_backends()) settings_.backends->add(backend, true);
    util::log_line(util::LogLevel::Info, "event=route_map_reload result=ok file=" +
                                             util::log_quote(settings_.routing.map_file));
  } else {
    util::log_line(util::LogLevel::Error, "event=route_map_reload result=failed kept=previous error=" +
                                              util::log_quote(error));
  }
}

void Proxy::start_health_checks() {
  if (!routing_) return;
  health_ = std::make_unique<HealthChecker>(loops_.front()->io.get_executor(), *settings_.backends,
                                            settings_.routing.health, backend_tls_, settings_.routing.verify,
                                            settings_.route_telemetry.get());
  health_->start();
}

std::size_t Proxy::kick(const route::KickRequest& request) const {
  const auto spread = request.spread.count() >= 0 ? request.spread : settings_.routing.kick_spread;
  // Each loop counts its matching sessions and schedules their BYEs; this thread
  // (the admin address's) waits for the counts.
  struct Count {
    std::atomic<std::size_t> kicked{0};
    std::atomic<std::size_t> loops_left;
    std::promise<void> done;
  };
  auto count = std::make_shared<Count>();
  count->loops_left = loops_.size();
  for (const auto& loop : loops_) {
    asio::post(loop->io, [this, &l = *loop, request, spread, count] {
      std::mt19937_64 random(std::random_device{}());
      std::vector<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> due;
      const auto now = std::chrono::steady_clock::now();
      for (const auto& relay : l.registry.relays) {
        if (!relay->kick_matches(request)) continue;
        const auto offset = spread.count() > 0 ? std::chrono::milliseconds(random() % spread.count())
                                               : std::chrono::milliseconds(0);
        due.emplace_back(now + offset, relay->id());
      }
      count->kicked += due.size();
      if (!due.empty()) {
        std::sort(due.begin(), due.end());
        asio::co_spawn(l.io, kick_on_loop(l, std::move(due), request.reason), asio::detached);
      }
      if (--count->loops_left == 0) count->done.set_value();
    });
  }
  (void)count->done.get_future().wait_for(kKickCountWait);
  const auto kicked = count->kicked.load();
  util::log_line(util::LogLevel::Info, "event=kick " +
                                           (request.user.empty() ? std::string() : "user_given=yes ") +
                                           (request.backend.empty() ? std::string() : "backend=" + request.backend + " ") +
                                           "sessions=" + std::to_string(kicked) +
                                           " spread_ms=" + std::to_string(spread.count()));
  return kicked;
}

asio::awaitable<void> Proxy::kick_on_loop(
    Loop& loop, std::vector<std::pair<std::chrono::steady_clock::time_point, std::uint64_t>> due,
    std::string reason) const {
  asio::steady_timer timer(loop.io);
  std::size_t next = 0;
  while (next < due.size()) {
    timer.expires_at(due[next].first);
    (void)co_await timer.async_wait(kNoThrow);
    const auto now = std::chrono::steady_clock::now() + kKickSlot;
    std::unordered_set<std::uint64_t> now_due;
    for (; next < due.size() && due[next].first <= now; ++next) now_due.insert(due[next].second);
    // A session that ended meanwhile is simply not found.
    for (auto& relay : loop.registry.relays) {
      if (now_due.count(relay->id())) relay->kick(reason);
    }
  }
}

}  // namespace imapscope::transport
