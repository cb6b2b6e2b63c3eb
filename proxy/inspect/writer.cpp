#include "proxy/inspect/writer.hpp"

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include <pthread.h>
#include <unistd.h>

#include "proxy/util/log.hpp"
#include "proxy/util/private_files.hpp"

namespace imapscope::inspect {
namespace fs = std::filesystem;

TranscriptWriter::TranscriptWriter(WriterOptions options) : options_(std::move(options)) {
  util::ensure_private_dir(options_.dir);
  open_next();
  thread_ = std::thread([this] { run(); });
  // Named, so that an operator (or a test) can tell the thread that waits on the disk.
  ::pthread_setname_np(thread_.native_handle(), "transcripts");
}

TranscriptWriter::~TranscriptWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
  close_file();
}

bool TranscriptWriter::write(std::string line) {
  {
    std::lock_guard lock(mutex_);
    if (queued_bytes_ + line.size() > options_.max_queued_bytes) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
  }
  wake_.notify_one();
  return true;
}

void TranscriptWriter::flush() {
  std::unique_lock lock(mutex_);
  drained_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void TranscriptWriter::run() {
  std::deque<std::string> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      busy_ = false;
      drained_.notify_all();
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      batch.swap(queue_);
      queued_bytes_ = 0;
      busy_ = true;
    }
    for (auto& line : batch) {
      if (file_ == nullptr) {  // the next file couldn't be opened: lines are lost, counted
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), file_);
      file_bytes_ += line.size();
      written_.fetch_add(1, std::memory_order_relaxed);
      if (file_bytes_ >= options_.max_file_bytes) {
        try {
          open_next();
        } catch (const std::exception&) {
          // A full or vanished disk must not end the proxy: the file stays closed.
        }
        enforce_total();
      }
    }
    if (file_ != nullptr) std::fflush(file_);
    batch.clear();
  }
}

void TranscriptWriter::close_file() {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
}

void TranscriptWriter::open_next() {
  close_file();
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  // Names sort by time: the folder bound deletes from the front.
  char sequence[16];
  std::snprintf(sequence, sizeof sequence, "%06u", sequence_++);
  const std::string name = options_.dir + "/imapscope-" + stamp + "-" + sequence;
  int fd = -1;
  try {
    fd = util::create_private_file(name + ".jsonl");
  } catch (const util::NameTaken&) {
    // Someone put a file or a link where the next transcript goes: it is left alone,
    // and the transcript goes under a name nobody can guess (still in time order).
    const std::string other = name + "-" + util::random_hex(8) + ".jsonl";
    fd = util::create_private_file(other);
    util::log_line(util::LogLevel::Warning, "event=transcript_name_taken file=" + util::log_quote(name + ".jsonl") +
                                                " written_to=" + util::log_quote(other) +
                                                " reason=\"exists already: not followed, not reused\"");
  }
  file_ = ::fdopen(fd, "w");
  if (file_ == nullptr) {
    ::close(fd);
    throw std::runtime_error(name + ".jsonl: can't be written");
  }
  std::setvbuf(file_, nullptr, _IOFBF, 64 << 10);  // a batch of lines, one write()
  file_bytes_ = 0;
}

void TranscriptWriter::enforce_total() {
  std::error_code ec;
  std::vector<std::pair<std::string, std::uint64_t>> files;
  std::uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("imapscope-", 0) != 0 || entry.path().extension() != ".jsonl") continue;
    if (!entry.is_regular_file(ec) || entry.is_symlink(ec)) continue;  // never ours: not counted, not removed
    const auto size = entry.file_size(ec);
    files.emplace_back(entry.path().string(), size);
    total += size;
  }
  std::sort(files.begin(), files.end());
  // The newest (the one being written) stays whatever its size.
  for (std::size_t i = 0; i + 1 < files.size() && total > options_.max_total_bytes; ++i) {
    fs::remove(files[i].first, ec);
    total -= files[i].second;
  }
}

}  // namespace imapscope::inspect
