#include "proxy/transport/stream.hpp"
#include "proxy/transport/no_throw.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>

#include <asio/ssl/error.hpp>

namespace imapscope::transport {
namespace {

constexpr std::size_t kScratch = 16 * 1024;  // one TLS record's worth of plaintext

// Shared by every stream of the thread: a read's bytes are consumed before the
// reading coroutine suspends again (see Stream::read).
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

}  // namespace

Stream::Stream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {
  asio::error_code ignored;
  socket_.non_blocking(true, ignored);
}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

template <typename Call>
asio::awaitable<std::pair<asio::error_code, int>> Stream::tls_call(Call call) {
  for (;;) {
    ERR_clear_error();
    const int result = call();
    if (result > 0) co_return std::pair{asio::error_code{}, result};
    const int code = SSL_get_error(ssl_, result);
    if (code == SSL_ERROR_WANT_READ) {
      auto [ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, kNoThrow);
      if (ec) co_return std::pair{ec, 0};
    } else if (code == SSL_ERROR_WANT_WRITE) {
      auto [ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_write, kNoThrow);
      if (ec) co_return std::pair{ec, 0};
    } else if (code == SSL_ERROR_ZERO_RETURN) {
      co_return std::pair{asio::error_code(asio::error::eof), 0};
    } else {
      co_return std::pair{ssl_error(code), 0};
    }
  }
}

asio::awaitable<std::pair<asio::error_code, std::string_view>> Stream::read() {
  // The wait is inline (no tls_call frame): an idle session parks here twice.
  char* buffer = scratch();
  for (;;) {
    if (reading_stopped_) co_return std::pair{asio::error_code(asio::error::eof), std::string_view()};
    auto wait = asio::ip::tcp::socket::wait_read;
    if (ssl_) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buffer, static_cast<int>(kScratch));
      if (n > 0) co_return std::pair{asio::error_code{}, std::string_view(buffer, static_cast<std::size_t>(n))};
      const int code = SSL_get_error(ssl_, n);
      if (code == SSL_ERROR_ZERO_RETURN) co_return std::pair{asio::error_code(asio::error::eof), std::string_view()};
      if (code == SSL_ERROR_WANT_WRITE) {
        wait = asio::ip::tcp::socket::wait_write;
      } else if (code != SSL_ERROR_WANT_READ) {
        co_return std::pair{ssl_error(code), std::string_view()};
      }
    } else {
      asio::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(buffer, kScratch), ec);
      if (ec != asio::error::would_block && ec != asio::error::try_again) {
        co_return std::pair{ec, std::string_view(buffer, n)};
      }
    }
    auto [wait_ec] = co_await socket_.async_wait(wait, kNoThrow);
    if (wait_ec) co_return std::pair{wait_ec, std::string_view()};
  }
}

asio::awaitable<std::pair<asio::error_code, std::size_t>> Stream::write_all(std::string_view data) {
  std::size_t done = 0;
  while (done < data.size()) {
    if (ssl_) {
      const auto chunk = data.substr(done);
      auto [ec, n] = co_await tls_call([&] {
        std::size_t written = 0;
        return SSL_write_ex(ssl_, chunk.data(), chunk.size(), &written) == 1 ? static_cast<int>(written) : 0;
      });
      if (ec) co_return std::pair{ec, done};
      done += static_cast<std::size_t>(n);
      continue;
    }
    asio::error_code ec;
    done += socket_.write_some(asio::buffer(data.substr(done)), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      auto [wait_ec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_write, kNoThrow);
      if (wait_ec) co_return std::pair{wait_ec, done};
    } else if (ec) {
      co_return std::pair{ec, done};
    }
  }
  co_return std::pair{asio::error_code{}, done};
}

std::pair<asio::error_code, std::size_t> Stream::try_write(std::string_view data) {
  std::size_t done = 0;
  while (done < data.size()) {
    if (ssl_) {
      ERR_clear_error();
      std::size_t written = 0;
      if (SSL_write_ex(ssl_, data.data() + done, data.size() - done, &written) == 1) {
        done += written;
        continue;
      }
      const int code = SSL_get_error(ssl_, 0);
      // The record OpenSSL could not finish stays with it; write_all() later
      // retries from the same byte, as OpenSSL requires.
      if (code == SSL_ERROR_WANT_WRITE || code == SSL_ERROR_WANT_READ) break;
      return {ssl_error(code), done};
    }
    asio::error_code ec;
    done += socket_.write_some(asio::buffer(data.substr(done)), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec) return {ec, done};
  }
  return {asio::error_code{}, done};
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
  }
  auto [ec, unused] = co_await tls_call([&] { return SSL_do_handshake(ssl_); });
  co_return ec;
}

asio::awaitable<asio::error_code> Stream::accept_tls(SSL_CTX* ctx) {
  co_return co_await handshake(ctx, true, {}, false);
}

asio::awaitable<asio::error_code> Stream::connect_tls(SSL_CTX* ctx, const std::string& server_name, bool verify) {
  co_return co_await handshake(ctx, false, server_name, verify);
}

std::string Stream::tls_version() const { return ssl_ ? SSL_get_version(ssl_) : "none"; }

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
