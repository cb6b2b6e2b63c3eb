// Temp files and folders of unit tests, removed when the test program exits: also
// those of a test whose failed ASSERT returned before its own clean-up.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

namespace imapscope::testing {

class TempPaths {
 public:
  TempPaths() = default;
  TempPaths(const TempPaths&) = delete;
  TempPaths& operator=(const TempPaths&) = delete;
  ~TempPaths() {
    for (const auto& path : paths_) {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  }
  void add(std::string path) {
    std::lock_guard lock(mutex_);
    paths_.push_back(std::move(path));
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> paths_;
};

inline void remove_at_exit(std::string path) {
  static TempPaths registry;
  registry.add(std::move(path));
}

// A new folder ("<temp dir>/<prefix>XXXXXX"), removed at exit.
inline std::string make_temp_dir(const std::string& prefix) {
  std::string dir = ::testing::TempDir() + prefix + "XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) ADD_FAILURE() << "mkdtemp " << dir;
  remove_at_exit(dir);
  return dir;
}

// A new file ("<temp dir>/<prefix>XXXXXX") holding text, removed at exit.
inline std::string write_temp_file(const std::string& prefix, const std::string& text) {
  std::string path = ::testing::TempDir() + prefix + "XXXXXX";
  const int fd = ::mkstemp(path.data());
  if (fd < 0) {
    ADD_FAILURE() << "mkstemp " << path;
    return path;
  }
  remove_at_exit(path);
  const auto written = ::write(fd, text.data(), text.size());
  if (written != static_cast<ssize_t>(text.size())) ADD_FAILURE() << "write " << path;
  ::close(fd);
  return path;
}

}  // namespace imapscope::testing
