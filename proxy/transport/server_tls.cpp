#include "proxy/transport/server_tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "proxy/transport/tls_context.hpp"
#include "proxy/transport/tls_names.hpp"

namespace imapscope::transport {
namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

// One configured pair, loaded.
struct Certificate {
  std::unique_ptr<X509, X509Free> leaf;
  std::unique_ptr<STACK_OF(X509), ChainFree> chain;  // intermediates, may be empty
  std::unique_ptr<EVP_PKEY, KeyFree> key;
  std::vector<std::string> names;
};

// Every certificate of a context, for the per-handshake choice. Owned by the
// context (ex_data): it lives as long as the last SSL object made from it.
struct CertificateTable {
  std::vector<Certificate> entries;
  std::vector<std::vector<std::string>> names;  // entries[i].names, for certificates_for()
  std::vector<std::size_t> defaults;            // what the context itself serves
};

// OpenSSL's first queued error, as "PEM routines: no start line"; the queue is emptied.
std::string openssl_reason(const std::string& fallback) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  const char* lib = ERR_lib_error_string(code);
  const char* reason = ERR_reason_error_string(code);
  std::string text = lib ? std::string(lib) + ": " : std::string();
  return text + (reason ? reason : fallback.c_str());
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + what + " " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A key every local user can read has leaked to all of them. Group-readable stays
// allowed: Debian's ssl-cert group (0640 root:ssl-cert) is the usual way to share one.
void check_key_permissions(const std::string& path, const TlsPolicy& policy) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    throw std::runtime_error("cannot read private key " + path + ": " + std::strerror(errno));
  }
  if ((st.st_mode & S_IROTH) != 0 && !policy.allow_world_readable_keys) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw std::runtime_error("private key " + path + " is readable by every user (mode " + mode + "): chmod o-r " +
                             path + ", or set allow_world_readable_keys (--allow-world-readable-keys)");
  }
}

std::string asn1_text(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s))};
}

// The SAN's DNS names; the subject's CN only when there are none (RFC 6125).
std::vector<std::string> names_of(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
      if (name->type == GEN_DNS) names.push_back(asn1_text(name->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0) names.push_back(asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index))));
  }
  return names;
}

Certificate load_certificate(const CertificateFiles& files, const TlsPolicy& policy) {
  Certificate c;
  const auto chain_pem = read_file(files.cert, "certificate");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(chain_pem.data(), static_cast<int>(chain_pem.size())));
  ERR_clear_error();
  c.leaf.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!c.leaf) throw std::runtime_error("certificate " + files.cert + ": " + openssl_reason("no PEM certificate"));
  c.chain.reset(sk_X509_new_null());
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) sk_X509_push(c.chain.get(), extra);
  ERR_clear_error();  // the end of the file reads as an error

  check_key_permissions(files.key, policy);
  const auto key_pem = read_file(files.key, "private key");
  std::unique_ptr<BIO, BioFree> key_bio(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  c.key.reset(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!c.key) throw std::runtime_error("private key " + files.key + ": " + openssl_reason("no PEM private key"));
  if (X509_check_private_key(c.leaf.get(), c.key.get()) != 1) {
    ERR_clear_error();
    throw std::runtime_error("private key " + files.key + " does not match certificate " + files.cert);
  }
  c.names = names_of(c.leaf.get());
  return c;
}

std::time_t not_after(X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return timegm(&tm);
}

void free_table(void*, void* table, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<CertificateTable*>(table); }

int table_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_table);
  return index;
}

const CertificateTable* table_of(SSL* ssl) {
  return static_cast<const CertificateTable*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), table_index()));
}

int key_type(EVP_PKEY* key) { return EVP_PKEY_get_base_id(key); }

// Installs the certificates that answer the client's SNI on this connection, one
// per key type (the first configured wins); OpenSSL then picks among them by the
// client's signature algorithms and, in TLS 1.2, its cipher suites. Called after
// the ClientHello's extensions are read and before the cipher is chosen. Without
// SNI, or for a name no certificate has, the context's defaults stay.
int choose_certificate(SSL* ssl, void*) {
  const auto* table = table_of(ssl);
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (table == nullptr || host == nullptr) return 1;
  const auto chosen = certificates_for(table->names, host);
  if (chosen.empty() || chosen == table->defaults) return 1;
  SSL_certs_clear(ssl);
  std::vector<int> types;
  for (const auto i : chosen) {
    const auto& c = table->entries[i];
    const int type = key_type(c.key.get());
    if (std::find(types.begin(), types.end(), type) != types.end()) continue;
    types.push_back(type);
    if (SSL_use_cert_and_key(ssl, c.leaf.get(), c.key.get(), c.chain.get(), 1) != 1) return 0;
  }
  return 1;
}

// Acknowledges a name some certificate has (the session then remembers it).
int acknowledge_name(SSL* ssl, int*, void*) {
  const auto* table = table_of(ssl);
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (table == nullptr || host == nullptr || certificates_for(table->names, host).empty()) return SSL_TLSEXT_ERR_NOACK;
  return SSL_TLSEXT_ERR_OK;
}

// Applies the policy; "" or why OpenSSL refuses it, with the field.
std::optional<TlsPolicyProblem> apply_policy(SSL_CTX* ctx, const TlsPolicy& policy) {
  SSL_CTX_set_min_proto_version(ctx, policy.min_version == TlsVersion::Tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  ERR_clear_error();
  if (SSL_CTX_set_cipher_list(ctx, policy.ciphers.c_str()) != 1) {
    return TlsPolicyProblem{"ciphers", "OpenSSL knows no TLS 1.2 cipher in \"" + policy.ciphers + "\" (" +
                                           openssl_reason("no cipher match") + ")"};
  }
  if (policy.ciphersuites.empty()) return std::nullopt;
  // OpenSSL skips names it doesn't know: each is tried alone so a typo is refused.
  std::string::size_type start = 0;
  while (start <= policy.ciphersuites.size()) {
    auto end = policy.ciphersuites.find(':', start);
    if (end == std::string::npos) end = policy.ciphersuites.size();
    const auto name = policy.ciphersuites.substr(start, end - start);
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> probe(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
    bool known = false;
    if (probe && SSL_CTX_set_ciphersuites(probe.get(), name.c_str()) == 1) {
      const auto* ciphers = SSL_CTX_get_ciphers(probe.get());
      for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
        known = known || std::strcmp(SSL_CIPHER_get_version(sk_SSL_CIPHER_value(ciphers, i)), "TLSv1.3") == 0;
      }
    }
    if (!known) {
      ERR_clear_error();
      return TlsPolicyProblem{"ciphersuites", "\"" + name + "\" is not a TLS 1.3 suite OpenSSL knows"
                                              " (e.g. TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256)"};
    }
    start = end + 1;
  }
  if (SSL_CTX_set_ciphersuites(ctx, policy.ciphersuites.c_str()) != 1) {
    return TlsPolicyProblem{"ciphersuites", openssl_reason("refused by OpenSSL")};
  }
  return std::nullopt;
}

}  // namespace

std::optional<TlsPolicyProblem> check_tls_policy(const TlsPolicy& policy) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  if (!ctx) return TlsPolicyProblem{"ciphers", openssl_reason("OpenSSL can't make a context")};
  return apply_policy(ctx.get(), policy);
}

ServerTlsContext make_server_tls(const std::vector<CertificateFiles>& certificates, const TlsPolicy& policy) {
  if (certificates.empty()) throw std::runtime_error("no certificate");
  auto table = std::make_unique<CertificateTable>();
  ServerTlsContext result;
  for (const auto& files : certificates) {
    table->entries.push_back(load_certificate(files, policy));
    table->names.push_back(table->entries.back().names);
    const auto expiry = not_after(table->entries.back().leaf.get());
    if (result.earliest_expiry == 0 || expiry < result.earliest_expiry) result.earliest_expiry = expiry;
  }
  // The default: the first certificate, and others with exactly its names and a
  // key of another type (its ECDSA twin).
  std::vector<int> default_types;
  for (std::size_t i = 0; i < table->entries.size(); ++i) {
    const int type = key_type(table->entries[i].key.get());
    if (table->names[i] != table->names[0] ||
        std::find(default_types.begin(), default_types.end(), type) != default_types.end()) {
      continue;
    }
    default_types.push_back(type);
    table->defaults.push_back(i);
  }

  result.ctx.reset(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  SSL_CTX* ctx = result.ctx.get();
  if (ctx == nullptr) throw std::runtime_error(openssl_reason("OpenSSL can't make a context"));
  apply_common_tls_settings(ctx);
  if (auto problem = apply_policy(ctx, policy)) throw std::runtime_error("tls_policy " + problem->field + ": " + problem->reason);
  for (const auto i : table->defaults) {
    auto& c = table->entries[i];
    if (SSL_CTX_use_cert_and_key(ctx, c.leaf.get(), c.key.get(), c.chain.get(), 1) != 1) {
      throw std::runtime_error("certificate " + certificates[i].cert + ": " + openssl_reason("refused by OpenSSL"));
    }
  }
  // Session resumption for returning clients (cheaper reconnects): TLS 1.3 tickets
  // (stateless, OpenSSL's default) and a TLS 1.2 session cache, shared by every
  // event loop since they share this context. A reload starts both afresh.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  static const unsigned char kContextId[] = "imapscope";
  SSL_CTX_set_session_id_context(ctx, kContextId, sizeof kContextId - 1);
  SSL_CTX_set_ex_data(ctx, table_index(), table.release());
  SSL_CTX_set_cert_cb(ctx, choose_certificate, nullptr);
  // SSL_CTX_set_tlsext_servername_callback() is a macro with a C cast.
  SSL_CTX_callback_ctrl(ctx, SSL_CTRL_SET_TLSEXT_SERVERNAME_CB, reinterpret_cast<void (*)()>(acknowledge_name));
  return result;
}

ServerTls::ServerTls(std::vector<CertificateFiles> certificates, TlsPolicy policy)
    : certificates_(std::move(certificates)), policy_(std::move(policy)), current_(make_server_tls(certificates_, policy_)) {}

SslContextPtr ServerTls::current() const {
  std::lock_guard lock(mutex_);
  return current_.ctx;
}

void ServerTls::reload() {
  ServerTlsContext fresh;
  try {
    fresh = make_server_tls(certificates_, policy_);  // the files are read outside the lock
  } catch (...) {
    ++reloads_failed_;
    throw;
  }
  std::lock_guard lock(mutex_);
  std::swap(current_, fresh);
  ++reloads_ok_;
}

std::time_t ServerTls::earliest_expiry() const {
  std::lock_guard lock(mutex_);
  return current_.earliest_expiry;
}

}  // namespace imapscope::transport
