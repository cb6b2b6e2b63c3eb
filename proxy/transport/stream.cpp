#include "proxy/transport/stream.hpp"

#include <openssl/ssl.h>

#include <asio/experimental/as_tuple.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace imapscope::transport {
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> Stream::read_some(char* data, std::size_t size) {
  if (tls_) {
    auto [ec, n] = co_await tls_->async_read_some(asio::buffer(data, size), kNoThrow);
    co_return std::pair{ec, n};
  }
  auto [ec, n] = co_await socket_.async_read_some(asio::buffer(data, size), kNoThrow);
  co_return std::pair{ec, n};
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> Stream::write_all(std::string_view data) {
  if (tls_) {
    auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(data), kNoThrow);
    co_return std::pair{ec, n};
  }
  auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(data), kNoThrow);
  co_return std::pair{ec, n};
}

asio::awaitable<asio::error_code> Stream::handshake(asio::ssl::context& ctx,
                                                    asio::ssl::stream_base::handshake_type type) {
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(socket_), ctx);
  auto [ec] = co_await tls_->async_handshake(type, kNoThrow);
  co_return ec;
}

asio::awaitable<asio::error_code> Stream::accept_tls(asio::ssl::context& ctx) {
  co_return co_await handshake(ctx, asio::ssl::stream_base::server);
}

asio::awaitable<asio::error_code> Stream::connect_tls(asio::ssl::context& ctx, const std::string& server_name,
                                                      bool verify) {
  tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(std::move(socket_), ctx);
  SSL* ssl = tls_->native_handle();
  // SNI; SSL_set_tlsext_host_name() is a macro with a C cast.
  if (!server_name.empty()) {
    SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(server_name.c_str()));
  }
  if (verify && !server_name.empty()) {
    // RFC 6125 host name check by OpenSSL itself; IP addresses are matched too.
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, server_name.c_str()) != 1) co_return asio::error::invalid_argument;
  }
  auto [hs] = co_await tls_->async_handshake(asio::ssl::stream_base::client, kNoThrow);
  co_return hs;
}

std::string Stream::tls_version() const {
  if (!tls_) return "none";
  return SSL_get_version(tls_->native_handle());
}

std::string Stream::tls_verify_error() const {
  if (!tls_) return {};
  const long result = SSL_get_verify_result(tls_->native_handle());
  return result == X509_V_OK ? std::string() : X509_verify_cert_error_string(result);
}

void Stream::stop_reading() {
  asio::error_code ignored;
  socket().shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
}

void Stream::close() {
  asio::error_code ignored;
  socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace imapscope::transport
