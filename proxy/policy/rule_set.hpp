// The rules in force, and their reloading. A RuleSet is immutable once loaded;
// RuleStore swaps whole sets, so a session sees either the old set or the new one,
// never a mix, and a set stays alive while a session still uses it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "proxy/policy/rule.hpp"

namespace imapscope::policy {

struct RuleSet {
  std::vector<Rule> rules;          // in evaluation order: files by name, rules as written
  std::vector<std::string> files;   // the files they came from
};

// Reads a rule file, or every *.json file of a directory in name order. Throws
// util::InputError naming the file, the JSON pointer and the reason. families: the
// client families rules may name (from the signatures), so a typo is an error.
RuleSet load_rules(const std::string& path, const std::vector<std::string>& families);
// One file's rules, already parsed as JSON; file names them in errors.
std::vector<Rule> parse_rules(const nlohmann::json& document, const std::vector<std::string>& families,
                              const std::string& file);

class RuleStore {
 public:
  RuleStore(std::string path, std::vector<std::string> families);

  // Loads the path again. On error the rules in force stay, the failure is counted
  // and the error returned (what() has file, pointer and reason).
  struct Outcome {
    bool ok = false;
    std::string error;
    std::size_t rules = 0;
  };
  Outcome reload();
  // Like reload() but throws util::InputError: for start-up, where a bad file ends the program.
  void load_or_throw();

  std::shared_ptr<const RuleSet> current() const;
  // Bumped by every successful load; sessions compare it to their snapshot's.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::uint64_t reload_failures() const { return failures_.load(std::memory_order_relaxed); }
  const std::string& path() const { return path_; }
  // Hits per rule name since start: counters survive reloads (a rule that keeps its
  // name keeps counting), so they can be exported as monotonic counters.
  std::vector<std::pair<std::string, std::uint64_t>> hit_counts() const;

 private:
  void install(RuleSet set);

  const std::string path_;
  const std::vector<std::string> families_;
  mutable std::mutex mutex_;
  std::shared_ptr<const RuleSet> current_;
  std::map<std::string, std::shared_ptr<std::atomic<std::uint64_t>>> counters_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> failures_{0};
};

}  // namespace imapscope::policy
