// Binding a listener's address: shared among this process's event loops, never
// with another process.
//
// Every loop binds each listener with SO_REUSEPORT so that the kernel spreads new
// connections over the loops. SO_REUSEPORT would just as well let a second
// imapscope (same user) join the group and silently take part of the connections,
// so before the loops bind, a probe binds the address without it: a listening
// socket of any other process makes that fail (SO_REUSEADDR, which the probe keeps
// so that connections of a previous run in TIME_WAIT don't count, never lets a bind
// succeed over a listening socket).
#pragma once

#include <string>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

namespace imapscope::transport {

// Throws std::runtime_error naming the listener and the address when another
// process listens there ("already in use by another process"). Port 0 asks for a
// fresh port: nothing to check.
void ensure_address_free(const asio::ip::tcp::endpoint& endpoint, const std::string& listener);

// A listening acceptor of one event loop, in the process's SO_REUSEPORT group.
asio::ip::tcp::acceptor open_shared_acceptor(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint,
                                             const std::string& listener);

// Other machines can connect to a listener on this address: anything but loopback
// (a wildcard counts). A plain listener there without a certificate is warned about.
bool reachable_beyond_this_machine(const asio::ip::address& address);

}  // namespace imapscope::transport
