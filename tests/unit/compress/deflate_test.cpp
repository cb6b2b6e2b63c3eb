// COMPRESS=DEFLATE streams: round trips in pieces, a stream that goes on across a
// released deflater, bounded inflation of a bomb, and broken input.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include <zlib.h>

#include "proxy/compress/deflate.hpp"

namespace imapscope::compress {
namespace {

std::string mail_like(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  static const char* words[] = {"Received: ", "from ", "mail.example.org ", "by ", "imap ", "Subject: ", "hello ",
                                "world ", "=?UTF-8?Q?caf=C3=A9?= ", "* 12 FETCH (FLAGS (\\Seen)) "};
  std::string out;
  while (out.size() < size) {
    out += words[rng() % 10];
    if (rng() % 7 == 0) out += "\r\n";
  }
  out.resize(size);
  return out;
}

std::string inflate_all(Inflater& inflater, std::string_view input, std::size_t step = 1 << 20) {
  std::string out;
  while (!input.empty()) {
    EXPECT_TRUE(inflater.inflate(input, out, step)) << inflater.error();
    if (!inflater.error().empty()) break;
  }
  return out;
}

TEST(Deflate, RoundTripInPiecesAndByteByByte) {
  Deflater deflater;
  std::string wire, sent;
  for (unsigned i = 0; i < 50; ++i) {
    const auto piece = mail_like(1 + i * 997, i);
    sent += piece;
    deflater.compress(piece, wire);
  }
  EXPECT_LT(wire.size(), sent.size() / 3);  // mail-like text compresses
  Inflater whole;
  EXPECT_EQ(inflate_all(whole, wire), sent);
  // A sync flush after each piece: whatever prefix has arrived inflates as far as it goes.
  Inflater bytewise;
  std::string out;
  for (char c : wire) {
    std::string_view one(&c, 1);
    ASSERT_TRUE(bytewise.inflate(one, out, 1 << 20)) << bytewise.error();
    EXPECT_TRUE(one.empty());
  }
  EXPECT_EQ(out, sent);
}

TEST(Deflate, TheStreamGoesOnAfterRelease) {
  Deflater deflater;
  std::string wire;
  deflater.compress("a1 OK [COMPRESSIONACTIVE] first burst\r\n", wire);
  EXPECT_TRUE(deflater.holds_state());
  deflater.release();  // an idle session keeps no deflate state
  EXPECT_FALSE(deflater.holds_state());
  deflater.compress("* 3 EXISTS\r\n", wire);
  deflater.compress(mail_like(100000, 7), wire);
  Inflater inflater;
  EXPECT_EQ(inflate_all(inflater, wire), "a1 OK [COMPRESSIONACTIVE] first burst\r\n* 3 EXISTS\r\n" + mail_like(100000, 7));
}

TEST(Deflate, InflationIsBounded) {
  Deflater deflater;
  std::string bomb;
  const std::string zeros(8 << 20, 'A');  // 8 MiB compresses to a few KiB
  deflater.compress(zeros, bomb);
  EXPECT_LT(bomb.size(), 64u * 1024);
  Inflater inflater;
  std::string_view input = bomb;
  std::string out;
  ASSERT_TRUE(inflater.inflate(input, out, 64 * 1024));
  EXPECT_LE(out.size(), 64u * 1024);
  EXPECT_FALSE(input.empty());  // the rest waits for the next call
  while (!input.empty()) ASSERT_TRUE(inflater.inflate(input, out, 64 * 1024));
  EXPECT_EQ(out, zeros);
}

TEST(Deflate, BrokenInputIsAnError) {
  Inflater inflater;
  std::string garbage = "\xff\xff\xff\xff this is not deflate";
  std::string_view input = garbage;
  std::string out;
  EXPECT_FALSE(inflater.inflate(input, out, 1 << 20));
  EXPECT_NE(inflater.error().find("corrupt"), std::string::npos) << inflater.error();
  std::string_view more = "x";
  EXPECT_FALSE(inflater.inflate(more, out, 1 << 20));  // stays broken
}

TEST(Deflate, AFinishedStreamKeepsItsLastBytes) {
  // What Dovecot does at LOGOUT: the BYE and the tagged OK come with a final block.
  const std::string last = "* BYE Logging out\r\nz1 OK Logout completed.\r\n";
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string wire(256, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(last.data()));
  z.avail_in = static_cast<uInt>(last.size());
  z.next_out = reinterpret_cast<Bytef*>(wire.data());
  z.avail_out = static_cast<uInt>(wire.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  wire.resize(wire.size() - z.avail_out);
  deflateEnd(&z);
  Inflater inflater;
  std::string_view input = wire;
  std::string out;
  ASSERT_TRUE(inflater.inflate(input, out, 1 << 20)) << inflater.error();
  EXPECT_EQ(out, last);
  EXPECT_TRUE(inflater.finished());
  std::string_view more = "after";
  EXPECT_FALSE(inflater.inflate(more, out, 1 << 20));
  EXPECT_EQ(inflater.error(), "data after the end of the compressed stream");
}

// A peer's stream as zlib writes it (32 KiB window), sync-flushed after each piece.
std::string peer_deflate(z_stream& z, std::string_view piece, int flush) {
  std::string out(piece.size() + 1024, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
  z.avail_in = static_cast<uInt>(piece.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, flush), Z_OK);
  out.resize(out.size() - z.avail_out);
  return out;
}

TEST(Deflate, AStoredBlockFitsWhereThePeerFlushed) {
  // Pass-through: the peer's stream is forwarded unchanged and a copy inflated; at a
  // boundary the proxy may end it with a block of its own (a BYE).
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Inflater copy;
  EXPECT_TRUE(copy.at_block_boundary());  // nothing yet: a stream starts with a block
  std::string forwarded, sent;
  for (unsigned i = 0; i < 20; ++i) {
    const auto piece = mail_like(100 + i * 1733, i);
    const auto wire = peer_deflate(z, piece, Z_SYNC_FLUSH);
    sent += piece;
    forwarded += wire;
    // Half of a flushed piece is in the middle of a block.
    std::string_view first_half = std::string_view(wire).substr(0, wire.size() / 2);
    std::string_view second_half = std::string_view(wire).substr(wire.size() / 2);
    std::string plain;
    ASSERT_TRUE(copy.inflate(first_half, plain, 1 << 20));
    EXPECT_FALSE(copy.at_block_boundary()) << "piece " << i;
    ASSERT_TRUE(copy.inflate(second_half, plain, 1 << 20));
    EXPECT_TRUE(copy.at_block_boundary()) << "piece " << i;
  }
  deflateEnd(&z);
  // More than one stored block's worth (65,535 bytes) goes in several blocks.
  const std::string own = "* BYE [UNAVAILABLE] Server shutting down\r\n" + std::string(70'000, 'b') + "\r\n";
  append_stored_block(own, forwarded);
  Inflater client;  // the inflater at the other end
  EXPECT_EQ(inflate_all(client, forwarded), sent + own);
  EXPECT_FALSE(client.finished());
}

TEST(Deflate, NoBoundaryInsideAFinalBlockOrAfterAnError) {
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  const auto wire = peer_deflate(z, "* BYE Logging out\r\n", Z_SYNC_FLUSH);
  std::string last(64, '\0');
  z.next_in = nullptr;
  z.avail_in = 0;
  z.next_out = reinterpret_cast<Bytef*>(last.data());
  z.avail_out = static_cast<uInt>(last.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  last.resize(last.size() - z.avail_out);
  deflateEnd(&z);
  Inflater copy;
  std::string plain;
  std::string_view input = wire;
  ASSERT_TRUE(copy.inflate(input, plain, 1 << 20));
  EXPECT_TRUE(copy.at_block_boundary());
  input = last;
  ASSERT_TRUE(copy.inflate(input, plain, 1 << 20));
  EXPECT_TRUE(copy.finished());
  EXPECT_FALSE(copy.at_block_boundary());  // nothing may follow a final block
  Inflater broken;
  std::string_view garbage = "\xff\xff\xff\xff";
  EXPECT_FALSE(broken.inflate(garbage, plain, 1 << 20));
  EXPECT_FALSE(broken.at_block_boundary());
}

}  // namespace
}  // namespace imapscope::compress
