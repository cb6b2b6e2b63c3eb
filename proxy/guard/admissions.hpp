// Sessions in total and before login, as HAProxy's maxconn and Dovecot's login
// process limits: the listener asks admit() right after accept (after the PROXY
// header) and before anything is spent on the client (no upstream connection, no
// TLS); the session reports when it has logged in and when it has ended.
//
// - sessions in total full: the newcomer is refused;
// - pre-login sessions of its address (IPv4, IPv6 /64) full: the newcomer is refused,
//   so that one address can't lock others out;
// - pre-login sessions in total full: the oldest pre-login session is evicted to make
//   room (Dovecot's way): a slow trickle of idle connections can't fill the proxy, and
//   a client that logs in promptly always gets in.
//
// Sans-IO and thread-safe: several event loops share one. An evicted session is
// handed back to the caller, who must end it on the session's own thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "proxy/guard/address_key.hpp"

namespace imapscope::guard {

struct SessionLimits {
  std::size_t max_sessions = 10'000;
  std::size_t max_prelogin = 5'000;
  // Dovecot's default login client_limit is 1000 for every address together; 128
  // from one address is far beyond a household or office behind one NAT logging in
  // at once, and far below what locks others out.
  std::size_t max_prelogin_per_address = 128;
};

// The default total: two descriptors per session (client and server sockets) out of
// the process's descriptor limit, less those in use once the listeners are open
// (event loops, acceptors, the admin address) and a headroom of 64 + 1/64 of the
// limit for what comes and goes (admin clients, name lookups, transcript files), as
// HAProxy derives maxconn from RLIMIT_NOFILE. At least 1.
std::size_t sessions_for_descriptors(std::uint64_t descriptor_limit, std::uint64_t in_use);

enum class Refusal : std::uint8_t {
  None,          // admitted
  SessionsFull,  // sessions in total at the limit
  AddressFull,   // pre-login sessions of this address at the limit
};

// A metric label and log word: "sessions_full", "address_full".
std::string_view refusal_name(Refusal refusal);

// A session that can be told to end because a newer one needs its pre-login place.
class Evictable {
 public:
  // Called on whichever thread admitted the newcomer, outside the guard's lock: the
  // implementation must carry it to the session's own thread.
  virtual void evict() = 0;
  virtual ~Evictable() = default;
};

class Admissions {
 public:
  explicit Admissions(const SessionLimits& limits) : limits_(limits) {}

  struct Verdict {
    Refusal refusal = Refusal::None;
    // Admitted in its place: end this one (it no longer counts as pre-login).
    std::shared_ptr<Evictable> evicted;
  };
  // A new session (ids are unique). Admitted sessions count until ended().
  Verdict admit(std::uint64_t session, const AddressKey& address, std::shared_ptr<Evictable> handle);
  // Logged in (or otherwise out of the pre-login state): it no longer counts as pre-login.
  void logged_in(std::uint64_t session);
  // Once for each admitted session.
  void ended(std::uint64_t session);

  struct Counts {
    std::size_t sessions = 0;
    std::size_t prelogin = 0;
  };
  Counts counts() const;
  const SessionLimits& limits() const { return limits_; }

 private:
  struct PreLogin {
    std::uint64_t session;
    AddressKey address;
    std::shared_ptr<Evictable> handle;
  };
  void forget_prelogin(std::list<PreLogin>::iterator it);  // with the lock held

  const SessionLimits limits_;
  mutable std::mutex mutex_;
  std::size_t sessions_ = 0;
  std::list<PreLogin> prelogin_;  // oldest first
  std::unordered_map<std::uint64_t, std::list<PreLogin>::iterator> by_session_;
  std::unordered_map<AddressKey, std::size_t, AddressKeyHash> per_address_;
};

}  // namespace imapscope::guard
