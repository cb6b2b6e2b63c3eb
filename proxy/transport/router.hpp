// Where a login goes in routing mode: the map file first (when set), then the answer
// cache, then the nginx-compatible lookup service (when set). One Router serves every
// event loop; lookups run on the calling coroutine's executor.
//
// Every lookup ends: an HTTP exchange is bounded by http_timeout, and a service that is
// down, slow or answers garbage gives Unavailable (the client's "NO [UNAVAILABLE]"),
// never an exception. nginx's WAIT is honoured: the lookup pauses Auth-Wait seconds (at
// most kMaxWaitPause each) and asks again, at most kMaxWaitRounds times.
// Refused answers carry Auth-Wait in LookupResult::wait: the caller delays the NO.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>

#include "proxy/route/auth_http.hpp"
#include "proxy/route/lookup_cache.hpp"
#include "proxy/route/route_map.hpp"
#include "proxy/route/telemetry.hpp"
#include "proxy/transport/http_client.hpp"

namespace imapscope::transport {

struct RouterSettings {
  std::string http_url;  // "http://127.0.0.1:8080/auth"; empty: no lookup service
  std::chrono::milliseconds http_timeout{5000};
  std::string map_file;  // empty: no map
  std::chrono::seconds cache_hit{300}, cache_miss{10};
  route::BackendTls default_tls = route::BackendTls::None;
};

inline constexpr unsigned kMaxWaitRounds = 5;
inline constexpr std::chrono::seconds kMaxWaitPause{30};
inline constexpr std::size_t kMaxLookupAnswer = 64 * 1024;
inline constexpr std::size_t kMaxMapFile = 512u << 20;

// Reads and parses a map file; throws util::InputError (FILE: why, or FILE:LINE:COL: why).
route::RouteMap load_route_map(const std::string& path, route::BackendTls default_tls);

class Router {  // shared by every event loop; thread-safe
 public:
  // Loads the map and checks the URL; throws util::InputError. Neither set is an error.
  Router(RouterSettings settings, route::RouteTelemetry* telemetry /*nullable*/);

  // The map first (when set; a user it has no entry for goes on to HTTP when set),
  // then the cache, then HTTP. Never throws.
  asio::awaitable<route::LookupResult> lookup(const route::LoginRequest& request);

  // SIGHUP: reads the map again. A broken map keeps the old one; error says
  // FILE:LINE:COL: why. True without a map (nothing to reload).
  bool reload_map(std::string& error);

  std::vector<route::Backend> map_backends() const;
  bool has_map() const { return !settings_.map_file.empty(); }
  bool has_http() const { return url_.has_value(); }

 private:
  std::shared_ptr<const route::RouteMap> current_map() const;
  asio::awaitable<route::LookupResult> ask_service(const route::LoginRequest& request);
  void report(std::string_view source, const route::LookupResult& result,
              std::chrono::steady_clock::time_point started) const;

  const RouterSettings settings_;
  route::RouteTelemetry* const telemetry_;
  std::optional<HttpUrl> url_;
  route::LookupCache cache_;
  mutable std::mutex map_mutex_;
  std::shared_ptr<const route::RouteMap> map_;  // null without a map file
};

}  // namespace imapscope::transport
