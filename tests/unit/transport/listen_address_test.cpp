// Listening addresses: shared among the process's loops (SO_REUSEPORT), refused when
// another listener holds them; which addresses count as this machine's. Loopback only.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>

#include "proxy/transport/client_address.hpp"
#include "proxy/transport/listen_address.hpp"

namespace imapscope::transport {
namespace {

const asio::ip::tcp::endpoint kAnyLoopbackPort(asio::ip::make_address("127.0.0.1"), 0);

TEST(ListenAddress, TheLoopsShareThePortAndEachAccepts) {
  asio::io_context io;
  auto first = open_shared_acceptor(io, kAnyLoopbackPort, "test");
  const auto endpoint = first.local_endpoint();
  auto second = open_shared_acceptor(io, endpoint, "test");
  EXPECT_EQ(second.local_endpoint(), endpoint);
  // The kernel spreads connections by their ports: 16 of them reach both sockets
  // (all on one: one chance in 2^15).
  std::vector<asio::ip::tcp::socket> clients;
  for (int i = 0; i < 16; ++i) {
    clients.emplace_back(io);
    clients.back().connect(endpoint);
  }
  first.non_blocking(true);
  second.non_blocking(true);
  int accepted[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    auto& acceptor = i == 0 ? first : second;
    for (;;) {
      asio::error_code ec;
      asio::ip::tcp::socket s(io);
      acceptor.accept(s, ec);
      if (ec) break;
      ++accepted[i];
    }
  }
  EXPECT_EQ(accepted[0] + accepted[1], 16);
  EXPECT_GT(accepted[0], 0);
  EXPECT_GT(accepted[1], 0);
}

TEST(ListenAddress, AnAddressAnotherListenerHoldsIsRefusedByName) {
  asio::io_context io;
  // Another process's listener, SO_REUSEPORT or not, looks the same to the probe.
  for (const bool reuse_port : {false, true}) {
    asio::ip::tcp::acceptor other(io);
    asio::ip::tcp::endpoint endpoint;
    if (reuse_port) {
      other = open_shared_acceptor(io, kAnyLoopbackPort, "other");
      endpoint = other.local_endpoint();
    } else {
      other = asio::ip::tcp::acceptor(io, kAnyLoopbackPort);
      endpoint = other.local_endpoint();
    }
    try {
      ensure_address_free(endpoint, "imap");
      FAIL() << "the probe bound a served address";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()), "listener imap: 127.0.0.1:" + std::to_string(endpoint.port()) +
                                           " is already in use by another process (another imapscope?)");
    }
  }
}

TEST(ListenAddress, AFreeAddressPassesAndStaysFree) {
  asio::io_context io;
  EXPECT_NO_THROW(ensure_address_free(kAnyLoopbackPort, "imap"));  // port 0: nothing to check
  std::uint16_t port = 0;
  {
    asio::ip::tcp::acceptor taken(io, kAnyLoopbackPort);
    port = taken.local_endpoint().port();
  }
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  EXPECT_NO_THROW(ensure_address_free(endpoint, "imap"));
  // The probe left nothing behind: the loops bind it.
  auto acceptor = open_shared_acceptor(io, endpoint, "imap");
  EXPECT_EQ(acceptor.local_endpoint().port(), port);
}

TEST(ListenAddress, WhatIsReachableFromOutside) {
  for (const auto* local : {"127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_FALSE(reachable_beyond_this_machine(asio::ip::make_address(local))) << local;
  }
  for (const auto* outside : {"0.0.0.0", "::", "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"}) {
    EXPECT_TRUE(reachable_beyond_this_machine(asio::ip::make_address(outside))) << outside;
  }
}

TEST(ClientAddresses, LoopbackClients) {
  auto client = [](std::string ip, bool known = true) {
    ClientAddresses a;
    a.source_ip = std::move(ip);
    a.known = known;
    return a;
  };
  for (const auto* local : {"127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(client(local).source_is_loopback()) << local;
  }
  for (const auto* outside : {"192.0.2.7", "2001:db8::7", "::ffff:192.0.2.7", "unknown"}) {
    EXPECT_FALSE(client(outside).source_is_loopback()) << outside;
  }
  EXPECT_FALSE(client("127.0.0.1", false).source_is_loopback());
}

}  // namespace
}  // namespace imapscope::transport
