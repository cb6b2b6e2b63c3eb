// One leg's byte stream: TCP, upgraded in place to TLS (implicit TLS or STARTTLS).
// All operations are awaitables returning error codes: nothing throws across
// coroutine boundaries.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>

namespace imapscope::transport {

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}

  asio::awaitable<std::pair<asio::error_code, std::size_t>> read_some(char* data, std::size_t size);
  // Bytes written are reported also on error (a cut-off write).
  asio::awaitable<std::pair<asio::error_code, std::size_t>> write_all(std::string_view data);

  // Server side of a TLS handshake (client leg).
  asio::awaitable<asio::error_code> accept_tls(asio::ssl::context& ctx);
  // Client side (upstream leg): SNI and, when verify, the host name check.
  asio::awaitable<asio::error_code> connect_tls(asio::ssl::context& ctx, const std::string& server_name,
                                                bool verify);

  bool is_tls() const { return tls_ != nullptr; }
  std::string tls_version() const;  // "TLSv1.3", or "none"
  std::string tls_verify_error() const;  // why the peer's certificate was refused, or empty
  asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  void close();
  // Ends reading (a pending read completes with EOF); writing goes on.
  void stop_reading();

 private:
  asio::awaitable<asio::error_code> handshake(asio::ssl::context& ctx, asio::ssl::stream_base::handshake_type type);

  asio::ip::tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>> tls_;  // owns the socket once upgraded
};

}  // namespace imapscope::transport
