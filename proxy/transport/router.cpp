#include "proxy/transport/router.hpp"

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <atomic>
#include <fstream>
#include <sstream>

#include "proxy/transport/no_throw.hpp"
#include "proxy/util/json_reader.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

using Clock = std::chrono::steady_clock;

route::LookupResult unavailable(std::string why) {
  route::LookupResult result;
  result.status = route::LookupStatus::Unavailable;
  result.message = std::move(why);
  return result;
}

}  // namespace

route::RouteMap load_route_map(const std::string& path, route::BackendTls default_tls) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw util::InputError(path + ": cannot be read");
  std::string text;
  char chunk[64 * 1024];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxMapFile) {
      throw util::InputError(path + ": longer than " + std::to_string(kMaxMapFile >> 20) + " MiB");
    }
  }
  if (in.bad()) throw util::InputError(path + ": cannot be read");
  return route::RouteMap::parse(text, path, default_tls);
}

Router::Router(RouterSettings settings, route::RouteTelemetry* telemetry)
    : settings_(std::move(settings)),
      telemetry_(telemetry),
      cache_(route::LookupCacheSettings{settings_.cache_hit, settings_.cache_miss, 100000}) {
  if (settings_.http_url.empty() && settings_.map_file.empty()) {
    throw util::InputError("routing needs a lookup service (http) or a map file (map)");
  }
  if (!settings_.http_url.empty()) {
    std::string error;
    url_ = parse_http_url(settings_.http_url, error);
    if (!url_) throw util::InputError("routing.http \"" + settings_.http_url + "\": " + error);
  }
  if (!settings_.map_file.empty()) {
    map_ = std::make_shared<const route::RouteMap>(load_route_map(settings_.map_file, settings_.default_tls));
  }
}

std::shared_ptr<const route::RouteMap> Router::current_map() const {
  std::lock_guard lock(map_mutex_);
  return map_;
}

bool Router::reload_map(std::string& error) {
  if (!has_map()) return true;
  try {
    auto fresh = std::make_shared<const route::RouteMap>(load_route_map(settings_.map_file, settings_.default_tls));
    std::lock_guard lock(map_mutex_);
    map_ = std::move(fresh);
    return true;
  } catch (const util::InputError& e) {
    error = e.what();
  } catch (const std::exception& e) {
    error = settings_.map_file + ": " + e.what();
  }
  return false;
}

std::vector<route::Backend> Router::map_backends() const {
  const auto map = current_map();
  return map ? map->backends() : std::vector<route::Backend>{};
}

void Router::report(std::string_view source, const route::LookupResult& result, Clock::time_point started) const {
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (telemetry_) telemetry_->lookup_done(source, result.status, seconds);
  if (result.status == route::LookupStatus::Unavailable) {
    // No user name here: log lines don't carry them (transcripts and the live view
    // label users by policy); the relay's session line says whose login it was.
    util::log_line(source == "map" ? util::LogLevel::Info : util::LogLevel::Warning,
                   "event=route_lookup_failed source=" + std::string(source) + " reason=" + util::log_quote(result.message));
  }
}

asio::awaitable<route::LookupResult> Router::lookup(const route::LoginRequest& request) {
  const auto started = Clock::now();
  try {
    if (const auto map = current_map()) {
      // Users the map has no entry for go to the service when there is one.
      if (auto found = map->find(request.user); found || !url_) {
        auto result = found ? std::move(*found) : map->lookup(request.user);
        report("map", result, started);
        co_return result;
      }
    }
    if (auto hit = cache_.find(request, started)) {
      report("cache", *hit, started);
      co_return std::move(*hit);
    }
    auto result = co_await ask_service(request);
    cache_.store(request, result, Clock::now());
    report("http", result, started);
    co_return result;
  } catch (const std::exception& e) {
    auto result = unavailable(std::string("lookup failed: ") + e.what());
    report("http", result, started);
    co_return result;
  }
}

asio::awaitable<route::LookupResult> Router::ask_service(const route::LoginRequest& request) {
  const auto executor = co_await asio::this_coro::executor;
  const route::AuthHttpTarget target{url_->host_header(), url_->path};
  const std::string bytes = route::auth_http_request(target, request);
  for (unsigned round = 1;; ++round) {
    auto exchange = co_await http_exchange(executor, url_->host, url_->port, bytes, settings_.http_timeout, kMaxLookupAnswer);
    if (exchange.error != HttpClientError::None) {
      co_return unavailable("lookup service " + url_->host_header() + ":" + std::to_string(url_->port) + ": " +
                            std::string(to_string(exchange.error)) + ": " + exchange.detail);
    }
    if (exchange.cut_by_deadline) {
      static std::atomic<bool> told{false};
      if (!told.exchange(true)) {
        util::log_line(util::LogLevel::Warning,
                       "event=route_lookup_slow reason=\"the lookup service kept the connection open after its answer "
                       "without Content-Length: each lookup waits for http_timeout_ms\"");
      }
    }
    auto verdict = route::parse_auth_http_answer(exchange.answer, settings_.default_tls);
    if (!verdict.ask_again) co_return std::move(verdict.result);
    if (round >= kMaxWaitRounds) {
      co_return unavailable("the lookup service answered WAIT " + std::to_string(kMaxWaitRounds) + " times");
    }
    asio::steady_timer pause(executor, std::min(verdict.result.wait, kMaxWaitPause));
    if (auto [ec] = co_await pause.async_wait(kNoThrow); ec) co_return unavailable("the lookup was cancelled");
  }
}

}  // namespace imapscope::transport
