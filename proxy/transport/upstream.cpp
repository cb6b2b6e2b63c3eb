#include "proxy/transport/upstream.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include "proxy/imap/abnf.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxGreeting = 64 * 1024;
// The proxy's own tag for its STARTTLS towards the server.
constexpr std::string_view kStarttlsTag = "imapscope-tls";

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
}

// Reads until buffer holds a line end after from; returns where that line ends (after LF).
asio::awaitable<std::pair<asio::error_code, std::size_t>> read_line(Stream& stream, std::string& buffer,
                                                                     std::size_t from, Clock::time_point deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  for (;;) {
    const auto lf = buffer.find('\n', from);
    if (lf != std::string::npos) co_return std::pair{asio::error_code{}, lf + 1};
    if (buffer.size() > kMaxGreeting) co_return std::pair{asio::error_code(asio::error::message_size), std::size_t{0}};
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

asio::awaitable<asio::error_code> tls_handshake(Stream& stream, asio::ssl::context& ctx, const std::string& name,
                                                bool verify, std::chrono::milliseconds timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto result = co_await (stream.connect_tls(ctx.native_handle(), name, verify) || timer.async_wait(kNoThrow));
  if (result.index() == 1) co_return asio::error_code(asio::error::timed_out);
  co_return std::get<0>(result);
}

UpstreamConnection failed(UpstreamConnection out, session::CloseReason reason, std::string error) {
  out.stream.reset();
  out.failure = reason;
  out.error = std::move(error);
  return out;
}

// TLS as configured, then the greeting; with STARTTLS, the proxy's own exchange.
asio::awaitable<UpstreamConnection> open_session(UpstreamConnection out, const UpstreamSettings& settings,
                                                 const std::string& host, asio::ssl::context* tls,
                                                 const Timeouts& timeouts) {
  const std::string& name = settings.server_name.empty() ? host : settings.server_name;
  Stream& stream = *out.stream;
  auto handshake = [&]() -> asio::awaitable<asio::error_code> {
    co_return co_await tls_handshake(stream, *tls, name, settings.verify, timeouts.tls_handshake);
  };
  auto tls_failure = [&](asio::error_code ec) {
    const auto detail = stream.tls_verify_error();
    return "TLS handshake with " + out.peer + " failed: " + (detail.empty() ? ec.message() : detail);
  };
  if (settings.tls == UpstreamTls::Implicit) {
    if (auto ec = co_await handshake()) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, tls_failure(ec));
  }
  auto [gec, greeting_end] = co_await read_line(stream, out.greeting, 0, Clock::now() + timeouts.greeting);
  if (gec) {
    co_return failed(std::move(out), session::CloseReason::UpstreamGreeting,
                     "no greeting from " + out.peer + ": " + gec.message());
  }
  if (settings.tls != UpstreamTls::Starttls) co_return out;

  // greeting = "*" SP (resp-cond-auth / resp-cond-bye): only "* OK" allows STARTTLS.
  out.greeting.resize(greeting_end);
  if (!starts_with_ci(out.greeting, "* OK")) {
    co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed,
                     "server greeting does not allow STARTTLS");
  }
  const std::string command = std::string(kStarttlsTag) + " STARTTLS\r\n";
  if (auto [wec, n] = co_await stream.write_all(command); wec) {
    co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, "STARTTLS: " + wec.message());
  }
  std::string replies;
  std::size_t line_start = 0;
  for (;;) {
    auto [rec, line_end] = co_await read_line(stream, replies, line_start, Clock::now() + timeouts.greeting);
    if (rec) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, "STARTTLS: " + rec.message());
    const std::string_view line = std::string_view(replies).substr(line_start, line_end - line_start);
    if (starts_with_ci(line, std::string(kStarttlsTag) + " ")) {
      if (!starts_with_ci(line.substr(kStarttlsTag.size() + 1), "OK")) {
        co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed,
                         "server refused STARTTLS: " + std::string(line.substr(0, 200)));
      }
      break;  // whatever came after the OK is plaintext injected before TLS: dropped
    }
    line_start = line_end;  // untagged lines (a CAPABILITY) are the proxy's own
  }
  if (auto ec = co_await handshake()) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, tls_failure(ec));
  out.did_starttls = true;
  co_return out;
}

}  // namespace

asio::awaitable<UpstreamConnection> connect_upstream(const UpstreamSettings& settings, asio::ssl::context* tls,
                                                     const Timeouts& timeouts) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(executor);
  std::string errors;
  for (const auto& address : settings.addresses) {
    auto [rec, results] = co_await resolver.async_resolve(address.host, std::to_string(address.port), kNoThrow);
    if (rec) {
      errors += address.to_string() + ": " + rec.message() + "; ";
      continue;
    }
    for (const auto& entry : results) {
      asio::ip::tcp::socket socket(executor);
      asio::steady_timer timer(executor, settings.connect_timeout);
      auto result = co_await (socket.async_connect(entry.endpoint(), kNoThrow) || timer.async_wait(kNoThrow));
      const auto peer = entry.endpoint().address().to_string() + ":" + std::to_string(entry.endpoint().port());
      if (result.index() == 1) {
        errors += peer + ": connect timed out; ";
        continue;
      }
      if (auto [cec] = std::get<0>(result); cec) {
        errors += peer + ": " + cec.message() + "; ";
        continue;
      }
      asio::error_code ignored;
      socket.set_option(asio::ip::tcp::no_delay(true), ignored);
      UpstreamConnection out;
      out.peer = peer;
      out.stream = std::make_unique<Stream>(std::move(socket));
      co_return co_await open_session(std::move(out), settings, address.host, tls, timeouts);
    }
  }
  UpstreamConnection out;
  out.failure = session::CloseReason::UpstreamUnavailable;
  out.error = errors.empty() ? "no upstream address configured" : errors.substr(0, errors.size() - 2);
  co_return out;
}

std::string Endpoint::to_string() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace imapscope::transport
