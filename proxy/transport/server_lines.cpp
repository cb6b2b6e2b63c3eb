#include "proxy/transport/server_lines.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

namespace imapscope::transport {

using namespace asio::experimental::awaitable_operators;

// Reads until buffer holds a line end after from; returns where that line ends (after LF).
asio::awaitable<std::pair<asio::error_code, std::size_t>> read_line(Stream& stream, std::string& buffer,
                                                                     std::size_t from, std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  for (;;) {
    const auto lf = buffer.find('\n', from);
    if (lf != std::string::npos) co_return std::pair{asio::error_code{}, lf + 1};
    if (buffer.size() > kMaxServerLine) co_return std::pair{asio::error_code(asio::error::message_size), std::size_t{0}};
    // The bytes are appended inside the racing coroutine: a read's view is valid only
    // until its reader suspends, and "||" completes only after the timer's cancellation.
    auto read_into_buffer = [&]() -> asio::awaitable<asio::error_code> {
      auto [ec, data] = co_await stream.read();
      buffer.append(data);
      co_return ec;
    };
    auto result = co_await (read_into_buffer() || timer.async_wait(kNoThrow));
    if (result.index() == 1) co_return std::pair{asio::error_code(asio::error::timed_out), std::size_t{0}};
    if (auto ec = std::get<0>(result)) co_return std::pair{ec, std::size_t{0}};
  }
}


// Reads server lines after `from` until the one tagged `tag`; returns where that line
// starts and ends.
asio::awaitable<std::tuple<asio::error_code, std::size_t, std::size_t>> read_until_tagged(
    Stream& stream, std::string& replies, std::string_view tag, std::chrono::steady_clock::time_point deadline) {
  std::size_t line_start = 0;
  for (;;) {
    auto [ec, line_end] = co_await read_line(stream, replies, line_start, deadline);
    if (ec) co_return std::tuple{ec, std::size_t{0}, std::size_t{0}};
    const std::string_view line = std::string_view(replies).substr(line_start, line_end - line_start);
    if (line.size() > tag.size() && line.substr(0, tag.size()) == tag && line[tag.size()] == ' ') {
      co_return std::tuple{asio::error_code{}, line_start + tag.size() + 1, line_end};
    }
    line_start = line_end;  // untagged lines (a CAPABILITY, the server's * ID) are the proxy's own
  }
}

}  // namespace imapscope::transport
