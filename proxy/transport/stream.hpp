// One leg's byte stream: a non-blocking TCP socket, upgraded in place to TLS
// (implicit TLS or STARTTLS) with OpenSSL working on the socket directly, through a
// BIO of ours that sends the records of one write at once (tls_socket_bio.hpp).
//
// Memory is what makes 10,000 idle sessions cheap: a stream holds no buffers of its
// own. A read waits for readability, then reads into the calling thread's scratch
// buffer; OpenSSL allocates its record buffers only while a record is in flight
// (SSL_MODE_RELEASE_BUFFERS). asio::ssl::stream would keep ~34 KiB per stream.
//
// The relay drives a stream with the non-blocking read_some()/write_some() and
// wait(), so that an idle session holds two small pending waits and no coroutine
// frame; read()/write_all() and the handshakes are awaitables for the set-up code.
// Errors are returned, never thrown. One read and one write may be in progress at
// a time.
#pragma once

#include <cstdint>
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

  // What a non-blocking call needs before it can go on (TLS may read to write).
  enum class Wait : std::uint8_t { None, Readable, Writable };
  struct ReadResult {
    asio::error_code ec;    // eof when the peer (or stop_reading) ended the stream
    // A per-thread buffer: consume or copy before the next read. Bytes may come
    // with an error or the end: they were read before it.
    std::string_view data;
    Wait wait = Wait::None;  // nothing to read now: call again once this is true
  };
  struct WriteResult {
    asio::error_code ec;
    std::size_t written = 0;  // also on error (a cut-off write)
    Wait wait = Wait::None;   // the socket takes no more now
  };
  ReadResult read_some();
  // written counts the bytes taken: a TLS stream may hold some of their records
  // and then asks to wait for Writable; the next call (with more data or none)
  // sends those first. has_unsent() says whether such records wait.
  WriteResult write_some(std::string_view data);
  bool has_unsent() const { return unsent_ != nullptr; }
  std::size_t unsent_bytes() const { return unsent_ ? unsent_->size() : 0; }
  // Calls handler(asio::error_code) once the socket is ready for the wanted call.
  template <typename Handler>
  void wait(Wait wait, Handler&& handler) {
    socket_.async_wait(wait == Wait::Writable ? asio::ip::tcp::socket::wait_write : asio::ip::tcp::socket::wait_read,
                       std::forward<Handler>(handler));
  }

  // Awaitable forms for the set-up: read() waits for data (the view is valid until
  // the caller's next suspension point); write_all() writes everything.
  asio::awaitable<std::pair<asio::error_code, std::string_view>> read();
  asio::awaitable<std::pair<asio::error_code, std::size_t>> write_all(std::string_view data);

  // Server side of a TLS handshake (client leg).
  asio::awaitable<asio::error_code> accept_tls(SSL_CTX* ctx);
  // Client side (upstream leg): SNI and, when verify, the host name check.
  asio::awaitable<asio::error_code> connect_tls(SSL_CTX* ctx, const std::string& server_name, bool verify);

  bool is_tls() const { return ssl_ != nullptr; }
  std::string tls_version() const;       // "TLSv1.3", or "none"
  std::string tls_cipher() const;        // OpenSSL's name ("TLS_AES_256_GCM_SHA384"), or ""
  bool tls_resumed() const;              // the handshake resumed an earlier TLS session
  std::string tls_verify_error() const;  // why the peer's certificate was refused, or empty
  asio::ip::tcp::socket& socket() { return socket_; }
  // A read wait ends once the socket holds this many bytes (or the stream ended).
  void set_read_low_water(std::uint32_t bytes);
  // Ends reading (a pending read completes with EOF); writing goes on.
  void stop_reading();
  void close();

 private:
  ReadResult read_tls();
  WriteResult write_tls(std::string_view data);
  bool send_unsent(WriteResult& result);
  asio::error_code send_or_keep(std::string_view records);
  std::size_t send_now(std::string_view bytes, asio::error_code& ec);
  asio::awaitable<asio::error_code> wait_for(Wait wait);
  asio::awaitable<asio::error_code> handshake(SSL_CTX* ctx, bool server, const std::string& server_name, bool verify);

  asio::ip::tcp::socket socket_;
  SSL* ssl_ = nullptr;
  // Records encrypted and not yet taken by the socket (only while it is full).
  std::unique_ptr<std::string> unsent_;
  std::string tls_peer_;  // upstream: "address/name", the key of its kept TLS sessions
  // Set by stop_reading(): a read in progress returns EOF without asking OpenSSL,
  // which would answer the half-closed socket with a fatal alert and then refuse
  // to write the last bytes (a BYE).
  bool reading_stopped_ = false;
};

}  // namespace imapscope::transport
