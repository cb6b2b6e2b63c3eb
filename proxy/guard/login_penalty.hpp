// The login penalty, as Dovecot's auth penalty (src/auth/auth-penalty.c): after a
// failed login from an address (IPv4, IPv6 /64), its next login attempt waits before
// it goes to the server: 2 s after the first failure, doubling with each further one,
// at most 15 s, counted from the last failure. A client retrying the credentials that
// just failed (a device with a stale password) doesn't raise the count: the digest of
// the last failed credentials is kept per address, never the credentials. A success
// from the address clears it; so does an hour without failures. The table is bounded:
// beyond max_addresses the address that failed longest ago goes.
//
// Sans-IO (the caller says what time it is) and thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>

#include "proxy/guard/address_key.hpp"

namespace imapscope::guard {

struct PenaltySettings {
  bool enabled = true;
  std::chrono::milliseconds initial{2'000};
  std::chrono::milliseconds max{15'000};
  // Failures older than this are forgotten (Dovecot: AUTH_PENALTY_TIMEOUT, an hour).
  std::chrono::seconds expire{3'600};
  std::size_t max_addresses = 65'536;
};

class LoginPenalty {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LoginPenalty(const PenaltySettings& settings) : settings_(settings) {}

  // How long a login attempt from this address must wait now; zero when it needn't.
  std::chrono::milliseconds delay(const AddressKey& address, Clock::time_point now);

  struct Failure {
    unsigned failures = 0;  // counted failures of the address, this one included
    bool repeated = false;  // the same credentials as the last failure: not counted again
    std::chrono::milliseconds next_delay{0};  // what the next attempt will wait
  };
  Failure failed(const AddressKey& address, std::uint64_t credentials, Clock::time_point now);
  void succeeded(const AddressKey& address);

  // The wait after this many counted failures (0: none).
  std::chrono::milliseconds penalty_for(unsigned failures) const;
  std::size_t addresses() const;

 private:
  struct Entry {
    AddressKey address;
    unsigned failures = 0;
    std::uint64_t last_credentials = 0;
    Clock::time_point last_failure;
  };
  using Order = std::list<Entry>;  // least recently failed first

  const PenaltySettings settings_;
  mutable std::mutex mutex_;
  Order order_;
  std::unordered_map<AddressKey, Order::iterator, AddressKeyHash> entries_;
};

}  // namespace imapscope::guard
