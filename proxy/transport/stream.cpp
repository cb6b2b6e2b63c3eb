#include "proxy/transport/stream.hpp"
#include "proxy/transport/no_throw.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <cerrno>

#include <asio/ssl/error.hpp>

#include "proxy/transport/tls_resumption.hpp"
#include "proxy/transport/tls_socket_bio.hpp"

namespace imapscope::transport {
namespace {

// A TLS read takes up to this much at once (every whole record OpenSSL holds):
// fewer system calls and decoder passes per byte.
constexpr std::size_t kScratch = 128 * 1024;
// The most plaintext one TLS record carries.
constexpr std::size_t kMaxRecord = 16 * 1024;
// A plain read takes less: its bytes are copied twice more (into the other leg's
// queue, into the kernel) and are cheapest while they are still in the cache.
// Measured (tests/bench/README.md, "Plain read size"): 32 KiB costs the relay
// 0.29-0.32 CPU-s per GB, 64 KiB 0.47, 128 KiB 0.39, 16 KiB 0.32-0.36 (more calls).
constexpr std::size_t kPlainRead = 32 * 1024;
// Records gathered for one system call: what one read_some() returns, and more
// when a queue built up.
constexpr std::size_t kBatch = 128 * 1024;

// Shared by every stream of the thread: a read's bytes are consumed before the
// thread reads anything else (see Stream::ReadResult).
char* scratch() {
  thread_local std::array<char, kScratch> buffer;
  return buffer.data();
}

// system_errno: errno right after the failed call (0 before it), for SSL_ERROR_SYSCALL:
// a reset under TLS is a reset, not an end of the stream.
asio::error_code ssl_error(int code, int system_errno = 0) {
  const unsigned long err = ERR_get_error();
  ERR_clear_error();
  if (err != 0) return {static_cast<int>(err), asio::error::get_ssl_category()};
  if (code == SSL_ERROR_SYSCALL && system_errno != 0) return {system_errno, asio::system_category()};
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
  if (!ssl_) {
    char* buffer = scratch();
    asio::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(buffer, kPlainRead), ec);
    if (would_block(ec)) return {{}, {}, Wait::Readable};
    return {ec, std::string_view(buffer, n), Wait::None};
  }
  // A read may make OpenSSL write (an alert, the answer to a key update): those
  // records queue behind any unsent ones, so the peer gets them in order.
  thread_local std::string written_by_read;
  written_by_read.clear();
  ReadResult result;
  {
    const RecordBatch batch(written_by_read);
    result = read_tls();
  }
  if (!written_by_read.empty()) send_or_keep(written_by_read);
  return result;
}

Stream::ReadResult Stream::read_tls() {
  // SSL_read returns one record at a time; servers write small ones (Dovecot 4 KiB),
  // and relaying each on its own would write a 4 KiB record per system call to the
  // other leg. So this takes every record OpenSSL already holds, up to the buffer.
  char* buffer = scratch();
  std::size_t got = 0;
  for (;;) {
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    if (SSL_read_ex(ssl_, buffer + got, kScratch - got, &n) == 1) {
      got += n;
      if (kScratch - got < kMaxRecord || SSL_has_pending(ssl_) != 1) break;
      continue;
    }
    const int system_errno = errno;
    const int code = SSL_get_error(ssl_, 0);
    const auto wait = wanted_by(code);
    // What came before an error or an end is returned with it (see ReadResult).
    if (got > 0 && wait != Wait::None) break;
    const std::string_view data(buffer, got);
    if (wait != Wait::None) return {{}, data, wait};
    if (code == SSL_ERROR_ZERO_RETURN) return {asio::error::eof, data, Wait::None};
    return {ssl_error(code, system_errno), data, Wait::None};
  }
  return {{}, std::string_view(buffer, got), Wait::None};
}

Stream::WriteResult Stream::write_some(std::string_view data) {
  if (ssl_) return write_tls(data);
  WriteResult result;
  result.written = send_now(data, result.ec);
  if (!result.ec && result.written < data.size()) result.wait = Wait::Writable;
  return result;
}

// Encrypts about kBatch of plaintext into one buffer of records and sends it with
// one system call (see tls_socket_bio.hpp). What the socket doesn't take is kept in
// unsent_ and goes first on the next call; OpenSSL itself never has to wait.
Stream::WriteResult Stream::write_tls(std::string_view data) {
  WriteResult result;
  if (!send_unsent(result)) return result;
  thread_local std::string records;
  while (result.written < data.size()) {
    records.clear();
    int failure = 0;
    {
      const RecordBatch batch(records);
      while (result.written < data.size() && records.size() < kBatch) {
        const auto rest = data.substr(result.written);  // a record at a time (partial writes)
        ERR_clear_error();
        std::size_t n = 0;
        if (SSL_write_ex(ssl_, rest.data(), rest.size(), &n) != 1) {
          failure = SSL_get_error(ssl_, 0);
          break;
        }
        result.written += n;
      }
    }
    // Records made before a failure (an alert among them) still go out.
    if (!records.empty()) {
      if (auto ec = send_or_keep(records)) {
        result.ec = ec;
        return result;
      }
      if (unsent_) {
        result.wait = Wait::Writable;
        return result;
      }
    }
    if (failure != 0) {
      result.ec = ssl_error(failure);
      return result;
    }
  }
  return result;
}

// Sends what an earlier write left; false when the caller must wait (or failed).
bool Stream::send_unsent(WriteResult& result) {
  if (!unsent_) return true;
  asio::error_code ec;
  const std::size_t sent = send_now(*unsent_, ec);
  if (ec) {
    result.ec = ec;
    return false;
  }
  unsent_->erase(0, sent);
  if (!unsent_->empty()) {
    result.wait = Wait::Writable;
    return false;
  }
  unsent_.reset();
  return true;
}

// Sends records now, or keeps what the socket doesn't take (after what waits already).
asio::error_code Stream::send_or_keep(std::string_view records) {
  if (unsent_) {
    unsent_->append(records);
    return {};
  }
  asio::error_code ec;
  const std::size_t sent = send_now(records, ec);
  if (!ec && sent < records.size()) unsent_ = std::make_unique<std::string>(records.substr(sent));
  return ec;
}

// As much of bytes as the socket takes now; ec only for a real error.
std::size_t Stream::send_now(std::string_view bytes, asio::error_code& ec) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    asio::error_code error;
    sent += socket_.write_some(asio::buffer(bytes.substr(sent)), error);
    if (would_block(error)) break;
    if (error) {
      ec = error;
      break;
    }
  }
  return sent;
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
  BIO* bio = ssl_ ? make_socket_bio(static_cast<int>(socket_.native_handle())) : nullptr;
  if (bio == nullptr) co_return ssl_error(SSL_ERROR_SSL);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by ssl_
  // Partial writes: SSL_write returns after each record (write_tls gathers them).
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

std::string Stream::tls_cipher() const {
  const char* name = ssl_ ? SSL_get_cipher_name(ssl_) : nullptr;
  return name ? name : "";
}

bool Stream::tls_resumed() const { return ssl_ != nullptr && SSL_session_reused(ssl_) == 1; }

std::string Stream::tls_verify_error() const {
  if (!ssl_) return {};
  const long result = SSL_get_verify_result(ssl_);
  return result == X509_V_OK ? std::string() : X509_verify_cert_error_string(result);
}

void Stream::set_read_low_water(std::uint32_t bytes) {
  asio::error_code ignored;  // a socket that refuses keeps waking at every byte
  socket_.set_option(asio::socket_base::receive_low_watermark(static_cast<int>(bytes)), ignored);
}

void Stream::stop_reading() {
  reading_stopped_ = true;
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);
}

void Stream::close() {
  if (unsent_) {
    WriteResult ignored;
    (void)send_unsent(ignored);
  }
  // close_notify may not overtake records that are still waiting.
  if (ssl_ && SSL_is_init_finished(ssl_) && !unsent_) {
    ERR_clear_error();
    (void)SSL_shutdown(ssl_);  // close_notify, best effort: the socket is non-blocking
    ERR_clear_error();
  }
  asio::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace imapscope::transport
