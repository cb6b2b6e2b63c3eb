// Rule files for unit tests: written to a temporary folder and loaded the way the
// proxy loads them.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "proxy/policy/rule_set.hpp"
#include "tests/support/temp_paths.hpp"

namespace imapscope::policy::testing {

inline const std::vector<std::string>& test_families() {
  static const std::vector<std::string> families{"thunderbird", "thunderbird_android", "apple_mail", "ios_mail",
                                                 "outlook", "python_imaplib", "other", "unknown"};
  return families;
}

// Writes text to a fresh file, alone in a new folder, and returns its path. The
// folder is made by mkdtemp: a name from the pid came back with a later process of
// the same pid and still held that one's rules.json (a directory test loaded 3
// rules instead of 2).
inline std::string write_file(const std::string& text, const std::string& name = "rules.json") {
  const std::string dir = imapscope::testing::make_temp_dir("imapscope-rules-");
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// A store loaded from one file with the given rules array (JSON text).
inline std::unique_ptr<RuleStore> store_with(const std::string& rules_json) {
  auto store = std::make_unique<RuleStore>(write_file("{\"rules\": " + rules_json + "}"), test_families());
  store->load_or_throw();
  return store;
}

// The error load_rules gives for a file holding text.
inline std::string load_error(const std::string& text) {
  try {
    (void)load_rules(write_file(text), test_families());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(loaded)";
}

}  // namespace imapscope::policy::testing
