#include "proxy/transport/tls_resumption.hpp"

#include <openssl/ssl.h>

#include <deque>
#include <mutex>
#include <unordered_map>

namespace imapscope::transport {
namespace {

// Bounds: a proxy talks to a handful of servers; a few tickets each cover the
// connections being opened at the same moment (the rest get a full handshake).
constexpr std::size_t kServers = 64;
constexpr std::size_t kSessionsPerServer = 16;

// Shared by every event loop using the context, hence the mutex (held for a
// pointer move, never during a handshake).
class SessionStore {
 public:
  ~SessionStore() {
    for (auto& [key, sessions] : by_server_) {
      for (SSL_SESSION* s : sessions) SSL_SESSION_free(s);
    }
  }

  // Takes ownership of session.
  void put(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mutex_);
    auto it = by_server_.find(key);
    if (it == by_server_.end()) {
      if (by_server_.size() >= kServers) {
        SSL_SESSION_free(session);
        return;
      }
      it = by_server_.emplace(key, std::deque<SSL_SESSION*>{}).first;
    }
    it->second.push_back(session);
    if (it->second.size() > kSessionsPerServer) {
      SSL_SESSION_free(it->second.front());
      it->second.pop_front();
    }
  }

  // The newest session still resumable, owned by the caller; null if none.
  SSL_SESSION* take(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = by_server_.find(key);
    if (it == by_server_.end()) return nullptr;
    while (!it->second.empty()) {
      SSL_SESSION* s = it->second.back();
      it->second.pop_back();
      if (SSL_SESSION_is_resumable(s) == 1) return s;
      SSL_SESSION_free(s);
    }
    return nullptr;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::deque<SSL_SESSION*>> by_server_;
};

void free_store(void*, void* store, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<SessionStore*>(store); }

int store_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_store);
  return index;
}

int key_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SessionStore* store_of(SSL* ssl) {
  return static_cast<SessionStore*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), store_index()));
}

// OpenSSL calls this for each new session: a TLS 1.2 session at the end of a full
// handshake, each TLS 1.3 ticket as it arrives after the handshake.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* store = store_of(ssl);
  const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
  if (store == nullptr || key == nullptr) return 0;
  store->put(*key, session);
  return 1;  // the store owns it now
}

}  // namespace

void enable_upstream_resumption(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, store_index(), new SessionStore);
  // Only the callback keeps sessions: OpenSSL's own client cache is never looked up.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

void offer_kept_session(SSL* ssl, const std::string* key) {
  auto* store = store_of(ssl);
  if (store == nullptr) return;
  SSL_set_ex_data(ssl, key_index(), const_cast<std::string*>(key));
  if (SSL_SESSION* session = store->take(*key)) {
    SSL_set_session(ssl, session);  // takes its own reference
    SSL_SESSION_free(session);
  }
}

void keep_reusable_session(SSL* ssl) {
  auto* store = store_of(ssl);
  const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
  if (store == nullptr || key == nullptr || SSL_version(ssl) >= TLS1_3_VERSION || SSL_session_reused(ssl) != 1) return;
  store->put(*key, SSL_get1_session(ssl));
}

}  // namespace imapscope::transport
