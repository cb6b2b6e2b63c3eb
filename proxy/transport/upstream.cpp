#include "proxy/transport/upstream.hpp"
#include "proxy/transport/no_throw.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <random>

#include "proxy/imap/abnf.hpp"
#include "proxy/transport/proxy_protocol.hpp"
#include "proxy/transport/server_lines.hpp"
#include "proxy/transport/upstream_resolver.hpp"

namespace imapscope::transport {
namespace {

using namespace asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
// The proxy's own tag for its STARTTLS towards the server.
constexpr std::string_view kStarttlsTag = "imapscope-tls";
// ... and for the ID that forwards the client's address.
constexpr std::string_view kIdTag = "imapscope-id";

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
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


// The proxy's own STARTTLS after the greeting; nothing the client sees.
asio::awaitable<std::string> upstream_starttls(Stream& stream, const std::string& greeting,
                                               const Timeouts& timeouts) {
  // greeting = "*" SP (resp-cond-auth / resp-cond-bye): only "* OK" allows STARTTLS.
  if (!starts_with_ci(greeting, "* OK")) co_return "server greeting does not allow STARTTLS";
  const std::string command = std::string(kStarttlsTag) + " STARTTLS\r\n";
  if (auto [wec, n] = co_await stream.write_all(command); wec) co_return "STARTTLS: " + wec.message();
  std::string replies;
  auto [rec, result, line_end] = co_await read_until_tagged(stream, replies, kStarttlsTag, Clock::now() + timeouts.greeting);
  if (rec) co_return "STARTTLS: " + rec.message();
  // Whatever came after the OK is plaintext injected before TLS: dropped.
  if (!starts_with_ci(std::string_view(replies).substr(result), "OK")) {
    co_return "server refused STARTTLS: " + replies.substr(result, std::min<std::size_t>(200, line_end - result));
  }
  co_return "";
}

// A tag for this process's sessions in the server's log: several imapscope instances
// behind one balancer number their sessions from 1 each.
const std::string& instance_tag() {
  static const std::string tag = [] {
    std::random_device random;
    char text[9];
    std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(random()));
    return std::string(text);
  }();
  return tag;
}

struct IdOutcome {
  bool fatal = false;   // the connection is unusable
  std::string problem;  // empty: forwarded
};

// Dovecot's forwarding ID (login_trusted_networks): before the client's first command,
// so that the server's login process sees the client, not the proxy. Its answer is
// the proxy's own; bytes after it are the session's.
asio::awaitable<IdOutcome> forward_by_id(Stream& stream, std::string& greeting, std::size_t greeting_end,
                                           const ClientAddresses& client, std::uint64_t session_id,
                                           const Timeouts& timeouts) {
  const std::string command =
      std::string(kIdTag) + " ID (\"x-originating-ip\" " + imap::quoted(client.source_ip).value_or("NIL") + " \"x-originating-port\" \"" +
      std::to_string(client.source_port) + "\" \"x-connected-ip\" " + imap::quoted(client.local_ip).value_or("NIL") +
      " \"x-connected-port\" \"" + std::to_string(client.local_port) + "\" \"x-session-id\" \"imapscope-" +
      instance_tag() + "-" + std::to_string(session_id) + "\")\r\n";
  if (auto [wec, n] = co_await stream.write_all(command); wec) co_return IdOutcome{true, "ID: " + wec.message()};
  std::string replies = greeting.substr(greeting_end);
  greeting.resize(greeting_end);
  auto [rec, result, line_end] = co_await read_until_tagged(stream, replies, kIdTag, Clock::now() + timeouts.greeting);
  if (rec) co_return IdOutcome{true, "ID: " + rec.message()};
  greeting += replies.substr(line_end);
  if (!starts_with_ci(std::string_view(replies).substr(result), "OK")) {
    // The server doesn't take forwarding; the session goes on without it.
    co_return IdOutcome{false, "server refused the forwarding ID: " +
                                   replies.substr(result, std::min<std::size_t>(200, line_end - result))};
  }
  co_return IdOutcome{};
}

// TLS as configured, then the greeting; with STARTTLS, the proxy's own exchange; then
// the forwarding ID.
asio::awaitable<UpstreamConnection> open_session(UpstreamConnection out, const UpstreamSettings& settings,
                                                 const std::string& host, asio::ssl::context* tls,
                                                 const Timeouts& timeouts, const ClientAddresses& client,
                                                 std::uint64_t session_id) {
  const std::string& name = settings.server_name.empty() ? host : settings.server_name;
  Stream& stream = *out.stream;
  auto handshake = [&]() -> asio::awaitable<asio::error_code> {
    co_return co_await tls_handshake(stream, *tls, name, settings.verify, timeouts.tls_handshake);
  };
  auto tls_failure = [&](asio::error_code ec) {
    const auto detail = stream.tls_verify_error();
    return "TLS handshake with " + out.peer + " failed: " + (detail.empty() ? ec.message() : detail);
  };
  if (settings.forward_client == ClientForwarding::ProxyV1 || settings.forward_client == ClientForwarding::ProxyV2) {
    ProxyHeader header;
    header.source_address = client.source_ip;
    header.source_port = client.source_port;
    header.destination_address = client.local_ip;
    header.destination_port = client.local_port;
    const auto bytes = make_proxy_header(settings.forward_client == ClientForwarding::ProxyV1 ? 1 : 2, header);
    if (auto [wec, n] = co_await stream.write_all(bytes); wec) {
      co_return failed(std::move(out), session::CloseReason::UpstreamUnavailable, "PROXY header: " + wec.message());
    }
  }
  if (settings.tls == UpstreamTls::Implicit) {
    if (auto ec = co_await handshake()) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, tls_failure(ec));
  }
  auto [gec, greeting_end] = co_await read_line(stream, out.greeting, 0, Clock::now() + timeouts.greeting);
  if (gec) {
    co_return failed(std::move(out), session::CloseReason::UpstreamGreeting,
                     "no greeting from " + out.peer + ": " + gec.message());
  }
  if (settings.tls == UpstreamTls::Starttls) {
    out.greeting.resize(greeting_end);
    auto error = co_await upstream_starttls(stream, out.greeting, timeouts);
    if (!error.empty()) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, std::move(error));
    if (auto ec = co_await handshake()) co_return failed(std::move(out), session::CloseReason::UpstreamTlsFailed, tls_failure(ec));
    out.did_starttls = true;
  }
  if (settings.forward_client == ClientForwarding::ImapId && starts_with_ci(out.greeting, "* OK")) {
    auto id = co_await forward_by_id(stream, out.greeting, greeting_end, client, session_id, timeouts);
    if (id.fatal) co_return failed(std::move(out), session::CloseReason::UpstreamGreeting, std::move(id.problem));
    out.notice = std::move(id.problem);
  }
  co_return out;
}

}  // namespace

asio::awaitable<UpstreamConnection> connect_upstream(const UpstreamSettings& settings, asio::ssl::context* tls,
                                                     const Timeouts& timeouts, const ClientAddresses& client,
                                                     std::uint64_t session_id) {
  auto executor = co_await asio::this_coro::executor;
  std::string errors;
  for (const auto& address : settings.addresses) {
    auto [rec, endpoints] = co_await resolve_upstream(address);
    if (rec) {
      errors += address.to_string() + ": " + rec.message() + "; ";
      continue;
    }
    for (const auto& endpoint : endpoints) {
      asio::ip::tcp::socket socket(executor);
      asio::steady_timer timer(executor, settings.connect_timeout);
      auto result = co_await (socket.async_connect(endpoint, kNoThrow) || timer.async_wait(kNoThrow));
      const auto peer = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
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
      co_return co_await open_session(std::move(out), settings, address.host, tls, timeouts, client, session_id);
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
