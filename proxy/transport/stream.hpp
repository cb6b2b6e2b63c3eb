// One leg's byte stream: a non-blocking TCP socket, upgraded in place to TLS
// (implicit TLS or STARTTLS) with OpenSSL working on the socket directly.
//
// Memory is what makes 10,000 idle sessions cheap: a stream holds no buffers of its
// own. A read waits for readability, then reads into the calling thread's scratch
// buffer; OpenSSL allocates its record buffers only while a record is in flight
// (SSL_MODE_RELEASE_BUFFERS). asio::ssl::stream would keep ~34 KiB per stream.
//
// All operations are awaitables returning error codes: nothing throws across
// coroutine boundaries. One read and one write may be in progress at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace imapscope::transport {

class Stream {
 public:
  explicit Stream(asio::ip::tcp::socket socket);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Waits for data and returns what is there: a view into a per-thread buffer,
  // valid until the caller's next suspension point. Consume it or copy it at once.
  asio::awaitable<std::pair<asio::error_code, std::string_view>> read();
  // Bytes written are reported also on error (a cut-off write).
  asio::awaitable<std::pair<asio::error_code, std::size_t>> write_all(std::string_view data);
  // Writes what the socket takes now, without waiting: the fast path that spares a
  // writer coroutine when the peer keeps up. Must not run while write_all() does.
  std::pair<asio::error_code, std::size_t> try_write(std::string_view data);

  // Server side of a TLS handshake (client leg).
  asio::awaitable<asio::error_code> accept_tls(SSL_CTX* ctx);
  // Client side (upstream leg): SNI and, when verify, the host name check.
  asio::awaitable<asio::error_code> connect_tls(SSL_CTX* ctx, const std::string& server_name, bool verify);

  bool is_tls() const { return ssl_ != nullptr; }
  std::string tls_version() const;       // "TLSv1.3", or "none"
  std::string tls_verify_error() const;  // why the peer's certificate was refused, or empty
  asio::ip::tcp::socket& socket() { return socket_; }
  // Ends reading (a pending read completes with EOF); writing goes on.
  void stop_reading();
  void close();

 private:
  // Drives an OpenSSL write or handshake that may want the socket readable or
  // writable (read() has its own loop, so an idle session parks one frame less).
  template <typename Call>
  asio::awaitable<std::pair<asio::error_code, int>> tls_call(Call call);
  asio::awaitable<asio::error_code> handshake(SSL_CTX* ctx, bool server, const std::string& server_name, bool verify);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  // Set by stop_reading(): a read in progress returns EOF without asking OpenSSL,
  // which would answer the half-closed socket with a fatal alert and then refuse
  // to write the last bytes (a BYE).
  bool reading_stopped_ = false;
};

}  // namespace imapscope::transport
