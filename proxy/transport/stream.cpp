#include "proxy/transport/stream.hpp"
#include "proxy/transport/no_throw.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>

#include <asio/ssl/error.hpp>

#include "proxy/transport/tls_resumption.hpp"

namespace imapscope::transport {
namespace {

// A plain read takes up to this much at once (a TLS read returns one record, at
// most 16 KiB): fewer system calls and decoder passes per byte.
constexpr std::size_t kScratch = 64 * 1024;

// Shared by every stream of the thread: a read's bytes are consumed before the
// thread reads anything else (see Stream::ReadResult).
char* scratch() {
  thread_local std::array<char, kScratch> buffer;
  return buffer.data();
}

asio::error_code ssl_error(int code) {
  const unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err != 0) return {static_cast<int>(err), asio::error::get_ssl_category()};
  if (code == SSL_ERROR_SYSCALL) return asio::ssl::error::stream_truncated;  // EOF without close_notify
  return asio::error::connection_aborted;
}

// What OpenSSL's call needs before it can go on; None for any other outcome.
Stream::Wait wanted_by(int ssl_error_code) {
  if (ssl_error_code == SSL_ERROR_WANT_READ) return Stream::Wait::Readable;
  if (ssl_error_code == SSL_ERROR_WANT_WRITE) return Stream::Wait::Writable;
  return Stream::Wait::None;
}

bool would_block(const asio::error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

}  // namespace

Stream::Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

Stream::ReadResult Stream::read_some() {
  if (reading_stopped_) return {asio::error::eof, {}, Wait::None};
  char* buffer = scratch();
  if (ssl_) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buffer, static_cast<int>(kScratch));
    if (n > 0) return {{}, std::string_view(buffer, static_cast<std::size_t>(n)), Wait::None};
    const int code = SSL_get_error(ssl_, n);
    if (const auto wait = wanted_by(code); wait != Wait::None) return {{}, {}, wait};
    if (code == SSL_ERROR_ZERO_RETURN) return {asio::error::eof, {}, Wait::None};
    return {ssl_error(code), {}, Wait::None};
  }
  asio::error_code ec;
  const std::size_t n = socket_.read_some(asio::buffer(buffer, kScratch), ec);
  if (would_block(ec)) return {{}, {}, Wait::Readable};
  return {ec, std::string_view(buffer, n), Wait::None};
}

Stream::WriteResult Stream::write_some(std::string_view data) {
  WriteResult result;
  while (result.written < data.size()) {
    const auto rest = data.substr(result.written);
    if (ssl_) {
      ERR_clear_error();
      std::size_t n = 0;
      if (SSL_write_ex(ssl_, rest.data(), rest.size(), &n) == 1) {
        result.written += n;
        continue;
      }
      const int code = SSL_get_error(ssl_, 0);
      result.wait = wanted_by(code);
      if (result.wait == Wait::None) result.ec = ssl_error(code);
      return result;
    }
    asio::error_code ec;
    result.written += socket_.write_some(asio::buffer(rest), ec);
    if (would_block(ec)) {
      result.wait = Wait::Writable;
      return result;
    }
    if (ec) {
      result.ec = ec;
      return result;
    }
  }
  return result;
}

asio::awaitable<asio::error_code> Stream::wait_for(Wait wait) {
  const auto what = wait == Wait::Writable ? asio::ip::tcp::socket::wait_write : asio::ip::tcp::socket::wait_read;
  auto [ec] = co_await socket_.async_wait(what, kNoThrow);
  co_return ec;
}

asio::awaitable<std::pair<asio::error_code, std::string_view>> Stream::read() {
  for (;;) {
    auto result = read_some();
    if (result.wait == Wait::None) co_return std::pair{result.ec, result.data};
    if (auto ec = co_await wait_for(result.wait)) co_return std::pair{ec, std::string_view()};
  }
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> Stream::write_all(std::string_view data) {
  std::size_t done = 0;
  for (;;) {
    auto result = write_some(data.substr(done));
    done += result.written;
    if (result.ec || result.wait == Wait::None) co_return std::pair{result.ec, done};
    if (auto ec = co_await wait_for(result.wait)) co_return std::pair{ec, done};
  }
}

asio::awaitable<asio::error_code> Stream::handshake(SSL_CTX* ctx, bool server, const std::string& server_name,
                                                    bool verify) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle())) != 1) {
    co_return ssl_error(SSL_ERROR_SSL);
  }
  // Partial writes: a write completes record by record, so one slow peer never
  // makes OpenSSL hold a whole queue.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    // SNI; SSL_set_tlsext_host_name() is a macro with a C cast.
    if (!server_name.empty()) {
      SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(server_name.c_str()));
    }
    if (verify && !server_name.empty()) {
      // RFC 6125 host name check by OpenSSL itself; an IP address is matched too.
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(ssl_, server_name.c_str()) != 1) co_return asio::error::invalid_argument;
    }
    asio::error_code ignored;
    const auto peer = socket_.remote_endpoint(ignored);
    tls_peer_ = peer.address().to_string() + ":" + std::to_string(peer.port()) + "/" + server_name;
    offer_kept_session(ssl_, &tls_peer_);
  }
  for (;;) {
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_);
    if (result == 1) {
      if (!server) keep_reusable_session(ssl_);
      co_return asio::error_code{};
    }
    const int code = SSL_get_error(ssl_, result);
    const Wait wait = wanted_by(code);
    if (wait == Wait::None) co_return code == SSL_ERROR_ZERO_RETURN ? asio::error_code(asio::error::eof) : ssl_error(code);
    if (auto ec = co_await wait_for(wait)) co_return ec;
  }
}

asio::awaitable<asio::error_code> Stream::accept_tls(SSL_CTX* ctx) {
  co_return co_await handshake(ctx, true, {}, false);
}

asio::awaitable<asio::error_code> Stream::connect_tls(SSL_CTX* ctx, const std::string& server_name, bool verify) {
  co_return co_await handshake(ctx, false, server_name, verify);
}

std::string Stream::tls_version() const { return ssl_ ? SSL_get_version(ssl_) : "none"; }

bool Stream::tls_resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_) == 1; }

std::string Stream::tls_verify_error() const {
  if (!ssl_) return {};
  const long result = SSL_get_verify_result(ssl_);
  return result == X509_V_OK ? std::string() : X509_verify_cert_error_string(result);
}

void Stream::stop_reading() {
  reading_stopped_ = true;
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
}

void Stream::close() {
  if (ssl_ && SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // close_notify, best effort: the socket is non-blocking
    ERR_clear_error();
  }
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace imapscope::transport
