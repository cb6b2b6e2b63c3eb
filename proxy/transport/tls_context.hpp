// OpenSSL contexts for both legs, built once at start-up (exceptions allowed there).
#pragma once

#include <memory>
#include <string>

#include <asio/ssl/context.hpp>

namespace imapscope::transport {

using TlsContextPtr = std::shared_ptr<asio::ssl::context>;

// Client leg: our certificate and key. TLS >= 1.2; buffers released while idle.
TlsContextPtr make_server_tls_context(const std::string& cert_file, const std::string& key_file);
// Upstream leg: verification against ca_file (or the system store) unless verify is false.
TlsContextPtr make_client_tls_context(const std::string& ca_file, bool verify);

}  // namespace imapscope::transport
