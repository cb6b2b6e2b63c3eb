#include "proxy/inspect/writer.hpp"

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace imapscope::inspect {
namespace fs = std::filesystem;

TranscriptWriter::TranscriptWriter(WriterOptions options) : options_(std::move(options)) {
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec) throw std::runtime_error(options_.dir + ": " + ec.message());
  open_next();
  thread_ = std::thread([this] { run(); });
}

TranscriptWriter::~TranscriptWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
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
      if (!file_.is_open()) {  // the next file couldn't be opened: lines are lost, counted
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      line += '\n';
      file_.write(line.data(), static_cast<std::streamsize>(line.size()));
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
    file_.flush();
    batch.clear();
  }
}

void TranscriptWriter::open_next() {
  if (file_.is_open()) file_.close();
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  // Names sort by time: the folder bound deletes from the front.
  char sequence[16];
  std::snprintf(sequence, sizeof sequence, "%06u", sequence_++);
  const std::string path = options_.dir + "/imapscope-" + stamp + "-" + sequence + ".jsonl";
  file_.open(path, std::ios::binary | std::ios::app);
  if (!file_) throw std::runtime_error(path + ": can't be written");
  file_bytes_ = 0;
}

void TranscriptWriter::enforce_total() {
  std::error_code ec;
  std::vector<std::pair<std::string, std::uint64_t>> files;
  std::uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("imapscope-", 0) != 0 || entry.path().extension() != ".jsonl") continue;
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
