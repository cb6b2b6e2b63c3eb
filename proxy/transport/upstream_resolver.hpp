// Where an upstream address points, for each new session's connection.
//
// A name is resolved once per event loop and kept for kResolvedFor: resolving it
// for every session (asio runs getaddrinfo on a helper thread, and "localhost"
// means reading /etc/hosts) was a visible part of a new session's cost. An address
// written as an IP skips the resolver. A failed lookup is not kept.
#pragma once

#include <chrono>
#include <utility>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

// Long enough that a burst of new sessions resolves once, short enough that a
// changed DNS record or hosts file is followed within a minute.
inline constexpr std::chrono::seconds kResolvedFor{30};

asio::awaitable<std::pair<asio::error_code, std::vector<asio::ip::tcp::endpoint>>> resolve_upstream(
    const Endpoint& address);

}  // namespace imapscope::transport
