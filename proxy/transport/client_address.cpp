#include "proxy/transport/client_address.hpp"
#include "proxy/transport/no_throw.hpp"

#include <algorithm>
#include <array>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include "proxy/transport/proxy_protocol.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
// A header split over segments is rare (HAProxy writes it with the first bytes):
// after a partial one, the next peek waits this long rather than spinning on a
// socket that stays readable.
constexpr auto kPartialHeaderPause = std::chrono::milliseconds(5);

}  // namespace

std::string ClientAddresses::source() const {
  return source_ip + ":" + std::to_string(source_port);
}

bool ClientAddresses::source_is_loopback() const {
  if (!known) return false;
  asio::error_code ec;
  const auto address = asio::ip::make_address(source_ip, ec);
  return !ec && is_loopback_address(address);
}

bool is_loopback_address(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
  }
  return address.is_loopback();
}

ClientAddresses addresses_of(const asio::ip::tcp::socket& socket) {
  ClientAddresses a;
  asio::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  a.known = !ec;
  a.source_ip = ec ? "unknown" : remote.address().to_string();
  a.source_port = ec ? 0 : remote.port();
  const auto local = socket.local_endpoint(ec);
  a.local_ip = ec ? "unknown" : local.address().to_string();
  a.local_port = ec ? 0 : local.port();
  return a;
}

std::string_view proxy_header_outcome_name(ProxyHeaderOutcome outcome) {
  switch (outcome) {
    case ProxyHeaderOutcome::Accepted: return "accepted";
    case ProxyHeaderOutcome::Local: return "local";
    case ProxyHeaderOutcome::Untrusted: return "untrusted";
    case ProxyHeaderOutcome::Invalid: return "invalid";
    case ProxyHeaderOutcome::TimedOut: return "timed_out";
    case ProxyHeaderOutcome::Closed: return "closed";
  }
  return "invalid";
}

asio::awaitable<ProxyHeaderRead> receive_proxy_header(asio::ip::tcp::socket& socket,
                                                      const std::vector<util::Cidr>& trusted,
                                                      std::chrono::milliseconds timeout) {
  ProxyHeaderRead read;
  read.addresses = addresses_of(socket);
  const auto& source = read.addresses.source_ip;
  if (!read.addresses.known) {
    // Reset before we got to it (a balancer's or a scanner's connect-and-close):
    // no one to trust or refuse.
    read.outcome = ProxyHeaderOutcome::Closed;
    read.error = "the connection was gone before its address could be read";
    co_return read;
  }
  if (std::none_of(trusted.begin(), trusted.end(), [&](const util::Cidr& c) { return c.contains(source); })) {
    read.outcome = ProxyHeaderOutcome::Untrusted;
    read.error = source + " is not in the listener's proxy_protocol trusted networks";
    co_return read;
  }
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer deadline(executor, timeout);
  std::array<char, kMaxProxyHeader> peeked;
  for (;;) {
    auto ready = co_await (socket.async_wait(asio::ip::tcp::socket::wait_read, kNoThrow) ||
                           deadline.async_wait(kNoThrow));
    if (ready.index() == 1) {
      read.outcome = ProxyHeaderOutcome::TimedOut;
      read.error = "no complete PROXY header within " + std::to_string(timeout.count()) + " ms";
      co_return read;
    }
    asio::error_code ec;
    const std::size_t n = socket.receive(asio::buffer(peeked), asio::socket_base::message_peek, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
    if (ec || n == 0) {
      read.outcome = ProxyHeaderOutcome::Closed;
      read.error = ec ? ec.message() : "closed before a complete PROXY header";
      co_return read;
    }
    auto parsed = parse_proxy_header(std::string_view(peeked.data(), n));
    if (parsed.status == ProxyParse::Invalid) {
      read.outcome = ProxyHeaderOutcome::Invalid;
      read.error = std::move(parsed.error);
      co_return read;
    }
    if (parsed.status == ProxyParse::NeedMore) {
      if (n == peeked.size()) {  // can't happen: the parser decides within kMaxProxyHeader
        read.outcome = ProxyHeaderOutcome::Invalid;
        read.error = "PROXY header too long";
        co_return read;
      }
      asio::steady_timer pause(executor, kPartialHeaderPause);
      auto paused = co_await (pause.async_wait(kNoThrow) || deadline.async_wait(kNoThrow));
      if (paused.index() == 1) {
        read.outcome = ProxyHeaderOutcome::TimedOut;
        read.error = "PROXY header incomplete after " + std::to_string(timeout.count()) + " ms";
        co_return read;
      }
      continue;
    }
    // The peeked bytes are in the socket's buffer: this read takes exactly them.
    const std::size_t consumed = socket.receive(asio::buffer(peeked.data(), parsed.length), 0, ec);
    if (ec || consumed != parsed.length) {
      read.outcome = ProxyHeaderOutcome::Closed;
      read.error = ec ? ec.message() : "short read of the PROXY header";
      co_return read;
    }
    if (parsed.header.local) {
      read.outcome = ProxyHeaderOutcome::Local;
      co_return read;
    }
    read.outcome = ProxyHeaderOutcome::Accepted;
    read.addresses.source_ip = parsed.header.source_address;
    read.addresses.source_port = parsed.header.source_port;
    read.addresses.local_ip = parsed.header.destination_address;
    read.addresses.local_port = parsed.header.destination_port;
    co_return read;
  }
}

}  // namespace imapscope::transport
