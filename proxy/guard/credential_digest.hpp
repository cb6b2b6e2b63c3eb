// A keyed one-way digest of login credentials, so that the login penalty can tell
// "the same wrong password again" (a device with a stale password) from a new guess
// without ever keeping a password. SipHash-2-4 (Aumasson, Bernstein) under a random
// key drawn once per process: the 64-bit digests mean nothing outside it and can't
// be looked up in a table of common passwords.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace imapscope::guard {

class CredentialDigest {
 public:
  CredentialDigest();  // a random key (getrandom)
  explicit CredentialDigest(const std::array<std::uint64_t, 2>& key) : key_(key) {}  // tests

  // The digest of so_far followed by part: credentials that arrive in pieces (a user
  // name and a password, SASL lines) are folded one piece after another, starting at 0.
  std::uint64_t fold(std::uint64_t so_far, std::string_view part) const;

 private:
  std::array<std::uint64_t, 2> key_;
};

}  // namespace imapscope::guard
