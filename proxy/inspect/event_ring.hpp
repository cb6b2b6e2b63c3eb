// The bounded ring of a live session's most recent events (JSON lines). Sessions
// spend most of their life in IDLE, where nobody reads their events: a ring is then
// packed, its lines deflated into a chunk (a few KiB of JSON become about a third),
// and inflated again only when the live view reads it. Later events stay as they
// are until the next pack, so a busy session pays nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace imapscope::inspect {

class EventRing {
 public:
  EventRing(std::size_t max_events, std::size_t max_bytes) : max_events_(max_events), max_bytes_(max_bytes) {}

  // A line without a newline (JSON lines never have one). The oldest go first when
  // a limit is passed; a packed chunk goes whole, so up to a chunk fewer are kept.
  void add(std::string line);
  // Deflates the lines added since the last pack: into the newest chunk while it is
  // small, else into a chunk of their own.
  void pack();
  std::size_t chunks() const { return chunks_.size(); }
  std::size_t size() const { return packed_events_ + (lines_.size() - head_); }
  // Every kept line, oldest first.
  std::vector<std::string> lines() const;

 private:
  struct Chunk {
    std::string deflated;
    std::uint32_t events = 0;
    std::uint32_t bytes = 0;  // the lines joined by newlines, before deflating
  };
  void trim();
  using Dictionary = std::shared_ptr<const std::string>;

  const std::size_t max_events_;
  const std::size_t max_bytes_;
  std::vector<Chunk> chunks_;      // oldest first
  std::vector<std::string> lines_; // after the chunks; lines_[head_] is the oldest kept
  std::size_t head_ = 0;
  std::size_t packed_events_ = 0;
  std::size_t bytes_ = 0;          // of every kept line, uncompressed
  Dictionary dictionary_;          // of every chunk: the one current at the first pack
};

}  // namespace imapscope::inspect
