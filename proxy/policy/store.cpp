#include "proxy/policy/rule_set.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::policy {

RuleStore::RuleStore(std::string path, std::vector<std::string> families)
    : path_(std::move(path)), families_(std::move(families)), current_(std::make_shared<RuleSet>()) {}

void RuleStore::load_or_throw() { install(load_rules(path_, families_)); }

RuleStore::Outcome RuleStore::reload() {
  Outcome outcome;
  try {
    RuleSet set = load_rules(path_, families_);
    outcome.rules = set.rules.size();
    install(std::move(set));
    outcome.ok = true;
  } catch (const std::exception& e) {
    // The rules in force stay: sessions go on with the set they have.
    failures_.fetch_add(1, std::memory_order_relaxed);
    outcome.error = e.what();
  }
  return outcome;
}

void RuleStore::install(RuleSet set) {
  std::lock_guard lock(mutex_);
  for (auto& rule : set.rules) {
    auto& counter = counters_[rule.name];
    if (!counter) counter = std::make_shared<std::atomic<std::uint64_t>>(0);
    rule.hits = counter;
  }
  current_ = std::make_shared<const RuleSet>(std::move(set));
  generation_.fetch_add(1, std::memory_order_release);
}

std::shared_ptr<const RuleSet> RuleStore::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::vector<std::pair<std::string, std::uint64_t>> RuleStore::hit_counts() const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const auto& [name, counter] : counters_) out.emplace_back(name, counter->load(std::memory_order_relaxed));
  return out;
}

}  // namespace imapscope::policy
