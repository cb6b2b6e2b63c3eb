#include "proxy/compress/deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <new>

namespace imapscope::compress {
namespace {

constexpr int kRawDeflate = -15;  // RFC 4978: raw DEFLATE; a peer may use the whole 32 KiB window
// Our own direction: an 8 KiB window and smaller hash tables (deflate state ~70 KiB
// instead of ~260 KiB). Mail compresses nearly as well; the peer's inflater
// accepts any window up to 32 KiB.
constexpr int kOwnWindowBits = -13;
constexpr int kOwnMemLevel = 6;
constexpr int kLevel = 6;  // zlib's default trade-off; what Dovecot uses
constexpr std::size_t kChunk = 16 * 1024;

}  // namespace

struct Deflater::State {
  z_stream z{};
  State() {
    if (deflateInit2(&z, kLevel, Z_DEFLATED, kOwnWindowBits, kOwnMemLevel, Z_DEFAULT_STRATEGY) != Z_OK) {
      throw std::bad_alloc();
    }
  }
  ~State() { deflateEnd(&z); }
};

Deflater::Deflater() = default;
Deflater::~Deflater() = default;

void Deflater::compress(std::string_view input, std::string& out) {
  if (input.empty()) return;
  if (!state_) state_ = std::make_unique<State>();
  z_stream& z = state_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(input.size());
  // Z_SYNC_FLUSH ends on a byte boundary with an empty stored block: everything so
  // far can be inflated, and the state may be dropped afterwards.
  do {
    const std::size_t before = out.size();
    out.resize(before + deflateBound(&z, z.avail_in) + kChunk);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    z.avail_out = static_cast<uInt>(out.size() - before);
    const int rc = deflate(&z, Z_SYNC_FLUSH);
    out.resize(out.size() - z.avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw std::bad_alloc();  // only a broken state gets here
  } while (z.avail_in > 0 || z.avail_out == 0);
}

void Deflater::release() { state_.reset(); }

struct Inflater::State {
  z_stream z{};
  // zlib's report after the last call: unused bits + 64 in the final block + 128
  // between blocks. A fresh stream is between blocks on a byte boundary.
  int data_type = 128;
  State() {
    if (inflateInit2(&z, kRawDeflate) != Z_OK) throw std::bad_alloc();
  }
  ~State() { inflateEnd(&z); }
};

Inflater::Inflater() : state_(std::make_unique<State>()) {}
Inflater::~Inflater() = default;

bool Inflater::inflate(std::string_view& input, std::string& out, std::size_t max_output) {
  if (!error_.empty()) return false;
  if (finished_ && !input.empty()) {
    error_ = "data after the end of the compressed stream";
    return false;
  }
  z_stream& z = state_->z;
  std::size_t produced = 0;
  while (!input.empty() && produced < max_output) {
    const std::size_t room = std::min(kChunk, max_output - produced);
    const std::size_t before = out.size();
    out.resize(before + room);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    z.avail_in = static_cast<uInt>(std::min<std::size_t>(input.size(), 1u << 30));
    z.next_out = reinterpret_cast<Bytef*>(out.data() + before);
    z.avail_out = static_cast<uInt>(room);
    const int rc = ::inflate(&z, Z_SYNC_FLUSH);
    state_->data_type = z.data_type;
    const std::size_t consumed = static_cast<std::size_t>(reinterpret_cast<const char*>(z.next_in) - input.data());
    input.remove_prefix(consumed);
    out.resize(out.size() - z.avail_out);
    produced += room - z.avail_out;
    if (rc == Z_STREAM_END) {
      // The peer finished its stream (Dovecot does at LOGOUT): what came with the
      // final block counts; nothing may follow it.
      finished_ = true;
      break;
    }
    if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT || rc == Z_STREAM_ERROR) {
      error_ = std::string("corrupt compressed data: ") + (z.msg ? z.msg : "inflate failed");
      return false;
    }
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    if (rc == Z_BUF_ERROR && consumed == 0 && z.avail_out == room) break;  // needs more input
  }
  return true;
}

bool Inflater::at_block_boundary() const {
  const int type = state_->data_type;
  return error_.empty() && !finished_ && (type & 128) != 0 && (type & 64) == 0 && (type & 63) == 0;
}

void append_stored_block(std::string_view data, std::string& out) {
  do {
    const std::size_t length = std::min<std::size_t>(data.size(), 0xffff);
    // BFINAL 0, BTYPE 00, padded to the byte; LEN and its complement, little-endian.
    const unsigned char header[5] = {0,
                                     static_cast<unsigned char>(length & 0xff),
                                     static_cast<unsigned char>(length >> 8),
                                     static_cast<unsigned char>(~length & 0xff),
                                     static_cast<unsigned char>((~length >> 8) & 0xff)};
    out.append(reinterpret_cast<const char*>(header), sizeof header);
    out.append(data.substr(0, length));
    data.remove_prefix(length);
  } while (!data.empty());
}

}  // namespace imapscope::compress
