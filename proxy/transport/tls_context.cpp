#include "proxy/transport/tls_context.hpp"

#include <openssl/ssl.h>

#include <stdexcept>

#include "proxy/transport/tls_resumption.hpp"

namespace imapscope::transport {
namespace {

void common_settings(asio::ssl::context& ctx) {
  SSL_CTX* native = ctx.native_handle();
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

}  // namespace

TlsContextPtr make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  common_settings(*ctx);
  asio::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) throw std::runtime_error("cannot load certificate " + cert_file + ": " + ec.message());
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) throw std::runtime_error("cannot load private key " + key_file + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw std::runtime_error("private key " + key_file + " does not match certificate " + cert_file);
  }
  // Session resumption for returning clients (cheaper reconnects): TLS 1.3 tickets
  // (stateless, OpenSSL's default) and a TLS 1.2 session cache, shared by every
  // event loop since they share this context.
  SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_SERVER);
  static const unsigned char kContextId[] = "imapscope";
  SSL_CTX_set_session_id_context(ctx->native_handle(), kContextId, sizeof kContextId - 1);
  return ctx;
}

TlsContextPtr make_client_tls_context(const std::string& ca_file, bool verify) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  common_settings(*ctx);
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
    ctx->load_verify_file(ca_file, ec);
    if (ec) throw std::runtime_error("cannot load CA file " + ca_file + ": " + ec.message());
  }
  return ctx;
}

}  // namespace imapscope::transport
