// Temp files and folders of unit tests, removed when the test program exits: also
// those of a test whose failed ASSERT returned before its own clean-up.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

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

}  // namespace imapscope::testing
