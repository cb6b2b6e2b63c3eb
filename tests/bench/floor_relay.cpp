// The floor of relaying on this machine: the least a relay can do per byte and per
// round trip, measured in the same run as imapscope and HAProxy (relay_bench.py, path
// "floor"). No IMAP, no events, no limits, no timeouts: a thread per connection,
// blocking sockets, one buffer, and what is read from one leg is written
// whole to the other. TLS the way the cheapest correct relay would do it: OpenSSL
// with read-ahead into a 64 KiB buffer, a read that takes every record already
// decrypted, and a write's records gathered in one send (a buffering BIO flushed
// after each write). It is not a proxy anyone should run: a benchmark reference only.
//
//   floor_relay --listen PORT --upstream IP:PORT [--tls-cert PEM --tls-key PEM]
//               [--upstream-tls]
//
// Listens on 127.0.0.1 only; the upstream's certificate is not verified (it costs
// per handshake, not per byte, and this is the per-byte floor).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

// Reads: a plain one at most 16 KiB (cheapest per byte here: the bytes are written
// on while still in the cache; 128 KiB cost 0.36 CPU-s/GB against 0.27-0.30), a TLS
// one every record OpenSSL holds, up to 128 KiB (one send per write either way).
constexpr std::size_t kPlainRead = 16 << 10;
constexpr std::size_t kBuffer = 128 << 10;
constexpr long kTlsReadBuffer = 64 << 10;
constexpr long kTlsWriteBuffer = 160 << 10;  // 128 KiB of plaintext as records, in one send

struct Options {
  int listen_port = 0;
  std::string upstream_ip;
  int upstream_port = 0;
  std::string cert, key;
  bool upstream_tls = false;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "floor_relay: %s\n", what.c_str());
  ERR_print_errors_fp(stderr);
  std::exit(2);
}

// One leg: a socket, with TLS on it or not.
class Leg {
 public:
  Leg(int fd, SSL* ssl) : fd_(fd), ssl_(ssl) {}
  ~Leg() {
    if (ssl_) SSL_free(ssl_);
    ::close(fd_);
  }
  Leg(const Leg&) = delete;
  Leg& operator=(const Leg&) = delete;

  int fd() const { return fd_; }
  // Bytes already read from the socket, waiting in OpenSSL: decrypted or not (with
  // read-ahead, a read takes whole records beyond the one it returns; poll() would
  // wait for bytes that already came).
  bool pending() const { return ssl_ && SSL_has_pending(ssl_) == 1; }

  // Reads what is there (at least one byte, blocking); 0 at the end or on an error.
  std::size_t read(char* buffer, std::size_t size) {
    if (!ssl_) {
      const ssize_t n = ::recv(fd_, buffer, std::min(size, kPlainRead), 0);
      return n > 0 ? static_cast<std::size_t>(n) : 0;
    }
    std::size_t got = 0;
    do {
      std::size_t n = 0;
      if (SSL_read_ex(ssl_, buffer + got, size - got, &n) != 1) break;
      got += n;
    } while (got < size && SSL_has_pending(ssl_) == 1);
    return got;
  }

  bool write(const char* data, std::size_t size) {
    if (!ssl_) {
      while (size > 0) {
        const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
        if (n <= 0) return false;
        data += n;
        size -= static_cast<std::size_t>(n);
      }
      return true;
    }
    std::size_t written = 0;
    return SSL_write_ex(ssl_, data, size, &written) == 1 && BIO_flush(SSL_get_wbio(ssl_)) == 1;
  }

 private:
  int fd_;
  SSL* ssl_;
};

// The socket BIO reads; writes go through a buffer so that one SSL_write's records
// leave in one send (OpenSSL flushes the write BIO after each handshake flight).
SSL* make_ssl(SSL_CTX* ctx, int fd) {
  SSL* ssl = SSL_new(ctx);
  BIO* socket_bio = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* buffer = BIO_new(BIO_f_buffer());
  if (!ssl || !socket_bio || !buffer || BIO_set_write_buffer_size(buffer, kTlsWriteBuffer) != 1) die("SSL set-up");
  BIO_up_ref(socket_bio);
  BIO_push(buffer, socket_bio);
  SSL_set_bio(ssl, socket_bio, buffer);
  return ssl;
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void relay(Leg& a, Leg& b) {
  std::vector<char> buffer(kBuffer);
  Leg* legs[2] = {&a, &b};
  for (;;) {
    int ready = -1;
    for (int i = 0; i < 2; ++i) {
      if (legs[i]->pending()) ready = i;
    }
    if (ready < 0) {
      pollfd fds[2] = {{a.fd(), POLLIN, 0}, {b.fd(), POLLIN, 0}};
      if (::poll(fds, 2, -1) <= 0) return;
      ready = fds[0].revents ? 0 : 1;
    }
    const std::size_t n = legs[ready]->read(buffer.data(), buffer.size());
    if (n == 0 || !legs[1 - ready]->write(buffer.data(), n)) return;
  }
}

int connect_upstream(const Options& options) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(options.upstream_port));
  if (fd < 0 || ::inet_pton(AF_INET, options.upstream_ip.c_str(), &address.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  no_delay(fd);
  return fd;
}

void serve(int client_fd, const Options& options, SSL_CTX* server_ctx, SSL_CTX* client_ctx) {
  no_delay(client_fd);
  SSL* client_ssl = server_ctx ? make_ssl(server_ctx, client_fd) : nullptr;
  Leg client(client_fd, client_ssl);
  if (client_ssl && SSL_accept(client_ssl) != 1) return;
  const int upstream_fd = connect_upstream(options);
  if (upstream_fd < 0) return;
  SSL* upstream_ssl = client_ctx ? make_ssl(client_ctx, upstream_fd) : nullptr;
  Leg upstream(upstream_fd, upstream_ssl);
  if (upstream_ssl && SSL_connect(upstream_ssl) != 1) return;
  relay(client, upstream);
}

SSL_CTX* make_ctx(bool server, const Options& options) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) die("SSL_CTX_new");
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kTlsReadBuffer);
  if (server && (SSL_CTX_use_certificate_chain_file(ctx, options.cert.c_str()) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, options.key.c_str(), SSL_FILETYPE_PEM) != 1)) {
    die("certificate or key: " + options.cert + ", " + options.key);
  }
  return ctx;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const bool has_value = i + 1 < argc;
    if (flag == "--upstream-tls") {
      options.upstream_tls = true;
    } else if (flag == "--listen" && has_value) {
      options.listen_port = std::atoi(argv[++i]);
    } else if (flag == "--upstream" && has_value) {
      const std::string value = argv[++i];
      const auto colon = value.rfind(':');
      if (colon == std::string::npos) die("--upstream wants IP:PORT");
      options.upstream_ip = value.substr(0, colon);
      options.upstream_port = std::atoi(value.c_str() + colon + 1);
    } else if (flag == "--tls-cert" && has_value) {
      options.cert = argv[++i];
    } else if (flag == "--tls-key" && has_value) {
      options.key = argv[++i];
    } else {
      die("usage: floor_relay --listen PORT --upstream IP:PORT [--tls-cert PEM --tls-key PEM] [--upstream-tls]");
    }
  }
  if (options.listen_port <= 0 || options.upstream_port <= 0) die("--listen and --upstream are required");
  if (options.cert.empty() != options.key.empty()) die("--tls-cert and --tls-key go together");
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  SSL_CTX* server_ctx = options.cert.empty() ? nullptr : make_ctx(true, options);
  SSL_CTX* client_ctx = options.upstream_tls ? make_ctx(false, options) : nullptr;

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(options.listen_port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(listener, 512) != 0) {
    die("cannot listen on 127.0.0.1:" + std::to_string(options.listen_port));
  }
  std::printf("floor_relay: 127.0.0.1:%d -> %s:%d%s%s\n", options.listen_port, options.upstream_ip.c_str(),
              options.upstream_port, server_ctx ? ", TLS from clients" : "",
              client_ctx ? ", TLS to the upstream" : "");
  std::fflush(stdout);
  for (;;) {
    const int client = ::accept(listener, nullptr, nullptr);
    if (client < 0) {
      ::usleep(10000);  // out of descriptors: wait instead of spinning
      continue;
    }
    std::thread(serve, client, std::cref(options), server_ctx, client_ctx).detach();
  }
}
