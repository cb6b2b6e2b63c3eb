#include "proxy/transport/listen_address.hpp"

#include "proxy/transport/client_address.hpp"

#include <stdexcept>

namespace imapscope::transport {
namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

std::string describe(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  const auto host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

void ensure_address_free(const asio::ip::tcp::endpoint& endpoint, const std::string& listener) {
  if (endpoint.port() == 0) return;
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io);
  asio::error_code ec;
  probe.open(endpoint.protocol(), ec);
  if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) probe.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    throw std::runtime_error("listener " + listener + ": " + describe(endpoint) +
                             " is already in use by another process (another imapscope?)");
  }
  // Anything else (no such address here, no permission) the loops' own bind reports.
}

asio::ip::tcp::acceptor open_shared_acceptor(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint,
                                             const std::string& listener) {
  asio::ip::tcp::acceptor acceptor(io);
  asio::error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.set_option(ReusePort(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("listener " + listener + ": cannot listen on " + describe(endpoint) + ": " + ec.message());
  return acceptor;
}

bool reachable_beyond_this_machine(const asio::ip::address& address) { return !is_loopback_address(address); }

}  // namespace imapscope::transport
