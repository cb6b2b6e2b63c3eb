#include "proxy/transport/tls_context.hpp"

#include <openssl/ssl.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "proxy/transport/tls_resumption.hpp"

namespace imapscope::transport {

void apply_common_tls_settings(SSL_CTX* native) {
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // An idle session keeps no TLS record buffers (they're up to 34 KiB per stream).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  // Whole socket reads instead of a header read and a body read per record: half
  // the system calls. Safe with the relay's edge-triggered waits because it reads
  // until OpenSSL wants more from the socket before it waits.
  SSL_CTX_set_read_ahead(native, 1);
  // Room for several records per system call: servers that write small records
  // (Dovecot: 4 KiB) then cost one read per 64 KiB instead of one per 16 KiB. The
  // buffer is only there while bytes are (SSL_MODE_RELEASE_BUFFERS).
  SSL_CTX_set_default_read_buffer_len(native, 64 * 1024);
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
}

TlsContextPtr make_client_tls_context(const std::string& ca_file, bool verify) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  apply_common_tls_settings(ctx->native_handle());
  enable_upstream_resumption(ctx->native_handle());
  asio::error_code ec;
  if (!verify) {
    ctx->set_verify_mode(asio::ssl::verify_none);
    return ctx;
  }
  ctx->set_verify_mode(asio::ssl::verify_peer);
  if (ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("cannot load the system CA store: " + ec.message());
  } else {
    // The system's reason first ("No such file or directory"): OpenSSL's says less.
    if (::access(ca_file.c_str(), R_OK) != 0) {
      throw std::runtime_error("cannot read CA file " + ca_file + ": " + std::strerror(errno));
    }
    ctx->load_verify_file(ca_file, ec);
    if (ec) throw std::runtime_error("cannot load CA file " + ca_file + ": " + ec.message());
  }
  return ctx;
}

}  // namespace imapscope::transport
