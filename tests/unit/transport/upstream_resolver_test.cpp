// resolve_upstream: IP addresses never reach the resolver; names are looked up
// through it (here only "localhost", from /etc/hosts: tests stay on loopback).
#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include "proxy/transport/upstream_resolver.hpp"

namespace imapscope::transport {
namespace {

std::pair<asio::error_code, std::vector<asio::ip::tcp::endpoint>> resolve(const Endpoint& address) {
  asio::io_context io;
  std::pair<asio::error_code, std::vector<asio::ip::tcp::endpoint>> out;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { out = co_await resolve_upstream(address); }, asio::detached);
  io.run();
  return out;
}

TEST(UpstreamResolver, AnIpAddressIsTheEndpointItself) {
  for (const auto* ip : {"127.0.0.1", "::1"}) {
    const auto [ec, endpoints] = resolve(Endpoint{ip, 1143});
    ASSERT_FALSE(ec) << ip;
    ASSERT_EQ(endpoints.size(), 1u) << ip;
    EXPECT_EQ(endpoints[0].address().to_string(), ip);
    EXPECT_EQ(endpoints[0].port(), 1143);
  }
}

TEST(UpstreamResolver, ANameIsResolvedAndTheKeptAnswerIsTheSame) {
  const auto first = resolve(Endpoint{"localhost", 1993});
  ASSERT_FALSE(first.first) << first.first.message();
  ASSERT_FALSE(first.second.empty());
  for (const auto& endpoint : first.second) {
    EXPECT_TRUE(endpoint.address().is_loopback()) << endpoint.address().to_string();
    EXPECT_EQ(endpoint.port(), 1993);
  }
  const auto again = resolve(Endpoint{"localhost", 1993});  // within kResolvedFor: kept
  EXPECT_EQ(again.second, first.second);
  const auto other_port = resolve(Endpoint{"localhost", 1994});  // a different key
  ASSERT_FALSE(other_port.second.empty());
  EXPECT_EQ(other_port.second[0].port(), 1994);
}

}  // namespace
}  // namespace imapscope::transport
