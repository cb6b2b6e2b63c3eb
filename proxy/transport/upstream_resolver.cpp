#include "proxy/transport/upstream_resolver.hpp"
#include "proxy/transport/no_throw.hpp"

#include <map>
#include <string>

#include <asio/this_coro.hpp>

namespace imapscope::transport {
namespace {

using Clock = std::chrono::steady_clock;

struct Resolved {
  std::vector<asio::ip::tcp::endpoint> endpoints;
  Clock::time_point until;
};

// Per thread: each event loop keeps its own, so no lock is needed.
std::map<std::string, Resolved>& resolved() {
  thread_local std::map<std::string, Resolved> cache;
  return cache;
}

}  // namespace

asio::awaitable<std::pair<asio::error_code, std::vector<asio::ip::tcp::endpoint>>> resolve_upstream(
    const Endpoint& address) {
  asio::error_code not_ip;
  const auto ip = asio::ip::make_address(address.host, not_ip);
  if (!not_ip) co_return std::pair{asio::error_code{}, std::vector{asio::ip::tcp::endpoint(ip, address.port)}};

  const auto key = address.to_string();
  const auto now = Clock::now();
  auto& cache = resolved();
  if (auto it = cache.find(key); it != cache.end() && now < it->second.until) {
    co_return std::pair{asio::error_code{}, it->second.endpoints};
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [ec, results] = co_await resolver.async_resolve(address.host, std::to_string(address.port), kNoThrow);
  if (ec) {
    cache.erase(key);
    co_return std::pair{ec, std::vector<asio::ip::tcp::endpoint>{}};
  }
  std::vector<asio::ip::tcp::endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  cache[key] = Resolved{endpoints, Clock::now() + kResolvedFor};
  co_return std::pair{asio::error_code{}, std::move(endpoints)};
}

}  // namespace imapscope::transport
