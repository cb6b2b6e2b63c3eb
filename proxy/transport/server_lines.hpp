// Reading a server's lines in the set-up code (coroutines, before the relay's
// callbacks own the stream): the greeting, the answers to the proxy's own commands
// (its STARTTLS, its ID, a replayed login, a health check), each bounded in time and
// size.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include <asio/awaitable.hpp>

#include "proxy/transport/stream.hpp"

namespace imapscope::transport {

// More than this before a line end is not a server line (message_size).
inline constexpr std::size_t kMaxServerLine = 64 * 1024;

// Reads until buffer holds a line end after from; returns where that line ends (after LF).
asio::awaitable<std::pair<asio::error_code, std::size_t>> read_line(Stream& stream, std::string& buffer,
                                                                     std::size_t from,
                                                                     std::chrono::steady_clock::time_point deadline);

// Reads server lines into replies until the one tagged `tag`; returns where that
// line's text (after the tag and its space) starts and where the line ends.
asio::awaitable<std::tuple<asio::error_code, std::size_t, std::size_t>> read_until_tagged(
    Stream& stream, std::string& replies, std::string_view tag, std::chrono::steady_clock::time_point deadline);

}  // namespace imapscope::transport
