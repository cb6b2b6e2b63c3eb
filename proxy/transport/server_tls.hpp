// The client leg's TLS: a listener's certificates (several, chosen by SNI, RSA and
// ECDSA side by side) under its policy, in one OpenSSL context that new handshakes
// start from. SIGHUP builds a new context from the same files and swaps it in.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

using SslContextPtr = std::shared_ptr<SSL_CTX>;

// What OpenSSL refuses in a policy: the field ("ciphers", "ciphersuites") and why.
struct TlsPolicyProblem {
  std::string field;
  std::string reason;
};
std::optional<TlsPolicyProblem> check_tls_policy(const TlsPolicy& policy);

struct ServerTlsContext {
  SslContextPtr ctx;
  std::time_t earliest_expiry = 0;  // the notAfter of the certificate that expires first
};

// Reads every certificate chain and key, checks them (each key matches its
// certificate; no key readable by every user unless the policy allows it) and
// builds the context. Throws std::runtime_error naming the file and the reason.
// Start-up, --check-config and reloads all come here.
ServerTlsContext make_server_tls(const std::vector<CertificateFiles>& certificates, const TlsPolicy& policy);

// The context a listener's new handshakes start from. An SSL object holds its own
// reference to the context it was made from: sessions already running keep theirs
// when reload() swaps in a new one. Every event loop reads it: thread-safe.
class ServerTls {
 public:
  ServerTls(std::vector<CertificateFiles> certificates, TlsPolicy policy);  // throws as make_server_tls
  SslContextPtr current() const;
  // Reads the files again; on failure throws, and the context in force stays.
  void reload();
  std::time_t earliest_expiry() const;
  std::size_t certificate_count() const { return certificates_.size(); }
  std::uint64_t reloads(bool ok) const { return (ok ? reloads_ok_ : reloads_failed_).load(std::memory_order_relaxed); }

 private:
  const std::vector<CertificateFiles> certificates_;
  const TlsPolicy policy_;
  mutable std::mutex mutex_;  // held for a pointer copy, never while files are read
  ServerTlsContext current_;
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_failed_{0};
};

}  // namespace imapscope::transport
