#include "proxy/guard/credential_digest.hpp"

#include <sys/random.h>

#include <cstring>
#include <stdexcept>

namespace imapscope::guard {
namespace {

constexpr std::uint64_t rotl(std::uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

struct SipState {
  std::uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);
  }
  void compress(std::uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

std::uint64_t load_le(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

CredentialDigest::CredentialDigest() {
  unsigned char raw[16];
  std::size_t got = 0;
  while (got < sizeof raw) {
    const auto n = getrandom(raw + got, sizeof raw - got, 0);
    if (n <= 0) throw std::runtime_error("getrandom failed: no key for the login penalty's digests");
    got += static_cast<std::size_t>(n);
  }
  key_ = {load_le(raw, 8), load_le(raw + 8, 8)};
}

// SipHash-2-4 of the 8 bytes of so_far (little-endian) followed by part.
std::uint64_t CredentialDigest::fold(std::uint64_t so_far, std::string_view part) const {
  SipState s{key_[0] ^ 0x736f6d6570736575ULL, key_[1] ^ 0x646f72616e646f6dULL, key_[0] ^ 0x6c7967656e657261ULL,
             key_[1] ^ 0x7465646279746573ULL};
  s.compress(so_far);
  const auto* p = reinterpret_cast<const unsigned char*>(part.data());
  const std::size_t whole = part.size() / 8 * 8;
  for (std::size_t i = 0; i < whole; i += 8) s.compress(load_le(p + i, 8));
  const std::uint64_t length = part.size() + 8;
  s.compress(load_le(p + whole, part.size() - whole) | (length << 56));
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

}  // namespace imapscope::guard
