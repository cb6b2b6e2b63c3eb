// Table tests from transcripts (tests/data/transcripts/*.imap): each case runs whole,
// byte by byte, and split in two at every offset of every chunk, and must give the
// same event log each time; the raw bytes of the events must be the input, exactly.
//
// IMAPSCOPE_UPDATE_TRANSCRIPTS=1 rewrites the expectations from the whole run (then
// read the diff: it is the review).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "proxy/replay/conversation.hpp"

namespace imapscope::replay {
namespace {

struct Case {
  std::string file;
  std::size_t index;
  Script script;
};

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(IMAPSCOPE_TRANSCRIPT_DIR)) {
    if (entry.path().extension() == ".imap") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto scripts = load_scripts(f.string());
    for (std::size_t i = 0; i < scripts.size(); ++i) cases.push_back(Case{f.string(), i, std::move(scripts[i])});
  }
  return cases;
}

const std::vector<Case>& cases() {
  static const auto all = all_cases();
  return all;
}

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + '\n';
  return s;
}

void expect_exact_bytes(const RunResult& r, const std::string& mode) {
  // Every consumed byte appears in exactly one event, in order.
  EXPECT_EQ(r.client_input.substr(0, r.client_raw.size()), r.client_raw) << mode;
  EXPECT_EQ(r.server_input.substr(0, r.server_raw.size()), r.server_raw) << mode;
}

class Transcript : public ::testing::TestWithParam<std::size_t> {};

TEST_P(Transcript, SameEventsWholeByteByByteAndSplit) {
  const Case& c = cases().at(GetParam());
  SCOPED_TRACE(c.file + ":" + std::to_string(c.script.line) + " " + c.script.name);
  const auto whole = run_script(c.script);
  expect_exact_bytes(whole, "whole");
  if (std::getenv("IMAPSCOPE_UPDATE_TRANSCRIPTS") == nullptr) {
    EXPECT_EQ(join(c.script.expected), join(whole.log));
  }

  const auto bytewise = run_script(c.script, [](std::size_t, std::size_t size) {
    return std::vector<std::size_t>(size, 1);
  });
  expect_exact_bytes(bytewise, "byte by byte");
  EXPECT_EQ(join(whole.log), join(bytewise.log)) << "byte by byte";

  for (std::size_t chunk = 0; chunk < c.script.chunks.size(); ++chunk) {
    const std::size_t size = c.script.chunks[chunk].bytes.size();
    // Every offset for ordinary chunks; a spread of offsets for bulk payloads.
    const std::size_t step = size <= 4096 ? 1 : size / 257;
    for (std::size_t at = 1; at < size; at += step) {
      const auto split = run_script(c.script, [&](std::size_t index, std::size_t n) {
        if (index != chunk) return std::vector<std::size_t>{n};
        return std::vector<std::size_t>{at, n - at};
      });
      expect_exact_bytes(split, "split");
      ASSERT_EQ(join(whole.log), join(split.log)) << "chunk " << chunk << " split at " << at;
    }
  }
}

std::string case_name(const ::testing::TestParamInfo<std::size_t>& info) {
  const Case& c = cases().at(info.param);
  std::string name = std::filesystem::path(c.file).stem().string() + "_" + c.script.name;
  for (auto& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Transcripts, Transcript, ::testing::Range<std::size_t>(0, cases().size()), case_name);

// With IMAPSCOPE_UPDATE_TRANSCRIPTS set, writes the expectations from the whole runs.
class UpdateTranscripts : public ::testing::Environment {
 public:
  void TearDown() override {
    if (std::getenv("IMAPSCOPE_UPDATE_TRANSCRIPTS") == nullptr) return;
    std::map<std::string, std::vector<std::vector<std::string>>> logs;
    for (const auto& c : cases()) logs[c.file].push_back(run_script(c.script).log);
    for (const auto& [file, file_logs] : logs) rewrite_expectations(file, file_logs);
  }
};
const auto* const kUpdate = ::testing::AddGlobalTestEnvironment(new UpdateTranscripts);

}  // namespace
}  // namespace imapscope::replay
