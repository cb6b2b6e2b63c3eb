// Writes transcript lines to files on a thread of its own. Sessions hand lines over
// through a bounded queue and never wait: when the queue is full (a slow or stalled
// disk) the line is dropped and counted, the traffic goes on. Files rotate by size and
// the oldest are deleted to keep the folder under a total size. The folder and the
// files are owner-only (util/private_files): a file is always new, never a name
// someone else put there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

namespace imapscope::inspect {

struct WriterOptions {
  std::string dir;                                    // made 0700 if missing; refused if others can write it
  std::uint64_t max_file_bytes = 64ull << 20;         // then the next file
  std::uint64_t max_total_bytes = 1ull << 30;         // oldest transcript files go first
  std::uint64_t max_queued_bytes = 16ull << 20;       // beyond this, lines are dropped
};

class TranscriptWriter {
 public:
  // Throws std::runtime_error when the folder can't be created or written, or is
  // not private (another owner, writable by group or others).
  explicit TranscriptWriter(WriterOptions options);
  ~TranscriptWriter();  // writes what is queued, then stops
  TranscriptWriter(const TranscriptWriter&) = delete;
  TranscriptWriter& operator=(const TranscriptWriter&) = delete;

  // One JSON line (without its newline). Never blocks on the disk; false: dropped.
  bool write(std::string line);
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  // Waits until everything queued so far is on disk (tests, shutdown).
  void flush();

 private:
  void run();
  void open_next();
  void close_file();
  void enforce_total();

  const WriterOptions options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<std::string> queue_;
  std::uint64_t queued_bytes_ = 0;
  bool stopping_ = false;
  bool busy_ = false;  // the thread holds lines taken from the queue
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> written_{0};
  // The writer thread's own.
  std::FILE* file_ = nullptr;
  std::uint64_t file_bytes_ = 0;
  unsigned sequence_ = 0;
  std::thread thread_;
};

}  // namespace imapscope::inspect
