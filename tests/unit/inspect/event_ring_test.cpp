#include "proxy/inspect/event_ring.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace imapscope::inspect {
namespace {

std::string event(int n) { return R"({"s":1,"text":"* )" + std::to_string(n) + R"( EXISTS"})"; }

std::vector<std::string> events(int from, int to) {
  std::vector<std::string> out;
  for (int n = from; n <= to; ++n) out.push_back(event(n));
  return out;
}

TEST(EventRing, PackedLinesReadBackInOrderWithLaterOnes) {
  EventRing ring(100, 1 << 20);
  for (int n = 1; n <= 10; ++n) ring.add(event(n));
  ring.pack();
  for (int n = 11; n <= 15; ++n) ring.add(event(n));
  ring.pack();
  ring.pack();  // nothing new: no empty chunk
  ring.add(event(16));
  EXPECT_EQ(ring.size(), 16u);
  EXPECT_EQ(ring.lines(), events(1, 16));
}

TEST(EventRing, AnIdleSessionsKeepalivesJoinItsChunk) {
  EventRing ring(40, 1 << 20);
  for (int n = 1; n <= 6; ++n) ring.add(event(n));
  ring.pack();
  for (int n = 7; n <= 10; ++n) {  // a keepalive at a time, packed as it comes
    ring.add(event(n));
    ring.pack();
  }
  EXPECT_EQ(ring.chunks(), 1u);
  EXPECT_EQ(ring.lines(), events(1, 10));
  ring.add(event(11));  // the chunk holds a quarter of the events allowed: a new one starts
  ring.pack();
  EXPECT_EQ(ring.chunks(), 2u);
  EXPECT_EQ(ring.size(), 11u);
  EXPECT_EQ(ring.lines(), events(1, 11));
}

TEST(EventRing, ChunksReadBackWhileTheLearntDictionaryChanges) {
  // Every ring's first pack may become the dictionary of later rings; a ring keeps
  // the one its chunks were made with, however often it changes meanwhile.
  EventRing kept(100, 1 << 20);
  for (int n = 1; n <= 5; ++n) kept.add(event(n));
  kept.pack();
  for (int session = 0; session < 1100; ++session) {  // past a refresh
    EventRing other(100, 1 << 20);
    other.add(R"({"s":)" + std::to_string(session) + R"(,"text":"* OK [CAPABILITY IMAP4rev1] ready"})");
    other.add(event(session));
    other.pack();
    ASSERT_EQ(other.lines().size(), 2u);
    ASSERT_EQ(other.lines()[1], event(session));
  }
  kept.add(event(6));
  kept.pack();  // merged into the chunk made with the first dictionary
  EXPECT_EQ(kept.chunks(), 1u);
  EXPECT_EQ(kept.lines(), events(1, 6));
}

TEST(EventRing, TheOldestGoFirstUnpackedOneByOnePackedChunkByChunk) {
  EventRing ring(10, 1 << 20);
  for (int n = 1; n <= 14; ++n) ring.add(event(n));
  EXPECT_EQ(ring.lines(), events(5, 14));
  ring.pack();               // 5..14 in one chunk
  ring.add(event(15));       // 11 kept: the whole chunk goes
  EXPECT_EQ(ring.lines(), events(15, 15));
  for (int n = 16; n <= 60; ++n) ring.add(event(n));
  EXPECT_EQ(ring.lines(), events(51, 60));  // and lines dropped in batches stay in order
}

TEST(EventRing, TheByteLimitCountsPackedLinesAsTheyWere) {
  const auto line = event(1);
  EventRing ring(100, 5 * line.size());
  for (int i = 0; i < 5; ++i) ring.add(line);
  ring.pack();
  EXPECT_EQ(ring.size(), 5u);
  ring.add(line);  // one byte too many: the chunk goes
  EXPECT_EQ(ring.size(), 1u);
}

TEST(EventRing, ALineWithANewlineIsNotPacked) {
  EventRing ring(100, 1 << 20);
  ring.add("one");
  ring.add("two\nlines");
  ring.pack();
  EXPECT_EQ(ring.lines(), (std::vector<std::string>{"one", "two\nlines"}));
}

}  // namespace
}  // namespace imapscope::inspect
