// Who a client is: the addresses of its connection, or, behind a load balancer
// that sends a PROXY protocol header, the addresses the header names. A header is
// taken only from a trusted network (anyone else could claim any address); the
// listener then requires it, as Dovecot's haproxy listeners do.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "proxy/util/cidr.hpp"

namespace imapscope::transport {

struct ClientAddresses {
  std::string source_ip;  // the client
  std::uint16_t source_port = 0;
  std::string local_ip;   // the address it connected to
  std::uint16_t local_port = 0;
  bool known = true;  // false: the peer was gone before its address could be read
  std::string source() const;  // "192.0.2.1:51234", as in the log and the live view
  // The client is on this machine (is_loopback_address of source_ip).
  bool source_is_loopback() const;
};

// 127.0.0.0/8, ::1, or an IPv4-mapped loopback address (::ffff:127.0.0.1, what a
// dual-stack socket reports for an IPv4 client).
bool is_loopback_address(const asio::ip::address& address);

ClientAddresses addresses_of(const asio::ip::tcp::socket& socket);

enum class ProxyHeaderOutcome : std::uint8_t {
  Accepted,   // the header named the client
  Local,      // the balancer's own connection (health check): the socket's addresses hold
  Untrusted,  // the connection comes from outside the trusted networks
  Invalid,    // not a PROXY header, or a broken one
  TimedOut,   // no complete header in time
  Closed,     // the peer closed or reset before a complete header
};

// A metric label and log word: "accepted", "local", "untrusted", ...
std::string_view proxy_header_outcome_name(ProxyHeaderOutcome outcome);

struct ProxyHeaderRead {
  ProxyHeaderOutcome outcome = ProxyHeaderOutcome::Closed;
  ClientAddresses addresses;  // the socket's own unless Accepted
  std::string error;          // why it was refused, for the log
};

// Reads exactly the header off the socket (peeking, so that what follows it, a TLS
// ClientHello or a command, stays unread for the session).
asio::awaitable<ProxyHeaderRead> receive_proxy_header(asio::ip::tcp::socket& socket,
                                                      const std::vector<util::Cidr>& trusted,
                                                      std::chrono::milliseconds timeout);

}  // namespace imapscope::transport
