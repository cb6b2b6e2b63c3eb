// Shared by the fuzz targets: limits chosen by the input's first bytes (so the limit
// paths are reached with small inputs), read sizes from a cheap PRNG, and the check
// that every consumed byte comes out of exactly one event, in order.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "proxy/imap/limits.hpp"

namespace imapscope::fuzz {

inline imap::DecoderLimits limits_from(std::uint8_t config, std::uint8_t value) {
  imap::DecoderLimits limits;
  if (config & 0x01) limits.max_line_length = 24 + value;
  if (config & 0x02) limits.max_inline_literal = value % 40;
  if (config & 0x04) limits.max_list_depth = 1 + value % 8;
  if (config & 0x08) limits.max_pending_commands = 1 + value % 4;
  if (config & 0x10) limits.max_literal_size = value * 3u;
  if (config & 0x20) limits.max_tag_length = 1 + value % 16;
  return limits;
}

// xorshift: deterministic read sizes from the input itself.
class ReadSizes {
 public:
  explicit ReadSizes(std::uint32_t seed) : state_(seed | 1u) {}
  std::size_t next(std::size_t left) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    const std::size_t choice = state_ % 4;
    const std::size_t size = choice == 0 ? 1 : choice == 1 ? 7 : choice == 2 ? 64 : 4096;
    return size < left ? size : left;
  }

 private:
  std::uint32_t state_;
};

// The raw bytes of the events so far are the consumed bytes, in order, less those the
// decoder holds of a message not yet emitted; and it never holds more than a line.
inline void check_exact(const std::string& fed, std::size_t unconsumed, const std::string& emitted,
                        const imap::DecoderLimits& limits) {
  const std::size_t consumed = fed.size() - unconsumed;
  if (emitted.size() > consumed || std::memcmp(emitted.data(), fed.data(), emitted.size()) != 0) std::abort();
  if (consumed - emitted.size() > limits.max_line_length) std::abort();
}

}  // namespace imapscope::fuzz
