#include "proxy/route/backends.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"

namespace imapscope::route {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
}

// The mechanisms the pre-login phase takes (prelogin_server): any other AUTH= would
// be offered and then refused.
bool spoken_mechanism(std::string_view mechanism) {
  for (std::string_view known : {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}) {
    if (imap::iequals(mechanism, known)) return true;
  }
  return false;
}

}  // namespace

std::string_view backend_health_name(BackendHealth health) {
  switch (health) {
    case BackendHealth::Up: return "up";
    case BackendHealth::Down: return "down";
    case BackendHealth::Unknown: break;
  }
  return "unknown";
}

std::vector<std::string> prelogin_capabilities(std::string_view list) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < list.size()) {
    const auto end = std::min(list.find(' ', pos), list.size());
    const auto word = list.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (imap::iequals(word, "STARTTLS") || imap::iequals(word, "LOGINDISABLED")) continue;
    if (starts_with_ci(word, "AUTH=") && !spoken_mechanism(word.substr(5))) continue;
    const bool repeated = std::any_of(out.begin(), out.end(), [&](const std::string& c) { return imap::iequals(c, word); });
    if (!repeated) out.emplace_back(word);
  }
  return out;
}

Backends::Backends(std::size_t max_learnt, unsigned fall, unsigned rise)
    : max_learnt_(max_learnt), fall_(std::max(1U, fall)), rise_(std::max(1U, rise)) {}

Backends::Entry* Backends::lookup(const std::string& name) {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const Backends::Entry* Backends::lookup(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void Backends::add(const Backend& b, bool configured) {
  const auto name = b.name();
  std::lock_guard lock(mutex_);
  if (auto* known = lookup(name)) {
    if (configured && !known->status.configured) {
      known->status.configured = true;
      --learnt_;  // its place among the learnt is free again
    }
    return;
  }
  if (!configured) {
    if (learnt_ >= max_learnt_) return;  // not tracked: "other"
    ++learnt_;
  }
  Entry entry;
  entry.status.backend = b;
  entry.status.configured = configured;
  index_.emplace(name, entries_.size());
  entries_.push_back(std::move(entry));
}

Admission Backends::admit(const Backend& b) const {
  std::lock_guard lock(mutex_);
  const auto* entry = lookup(b.name());
  if (!entry) return Admission::Unknown;
  if (entry->status.draining) return Admission::Draining;
  switch (entry->status.health) {
    case BackendHealth::Up: return Admission::Ok;
    case BackendHealth::Down: return Admission::Down;
    case BackendHealth::Unknown: break;
  }
  return Admission::Unknown;
}

void Backends::session_started(const Backend& b) {
  std::lock_guard lock(mutex_);
  if (auto* entry = lookup(b.name())) {
    ++entry->status.sessions;
  } else {
    ++untracked_sessions_;
  }
}

void Backends::session_ended(const Backend& b) {
  std::lock_guard lock(mutex_);
  auto* entry = lookup(b.name());
  auto& count = entry ? entry->status.sessions : untracked_sessions_;
  if (count > 0) --count;
}

std::optional<BackendHealth> Backends::check_result(const Backend& b, bool ok, std::string error,
                                                    std::string greeting_capabilities,
                                                    std::chrono::system_clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto* entry = lookup(b.name());
  if (!entry) return std::nullopt;
  auto& status = entry->status;
  const auto before = status.health;
  status.last_check = now;
  if (ok) {
    entry->failures_in_row = 0;
    ++entry->successes_in_row;
    status.last_error.clear();
    if (!greeting_capabilities.empty()) status.capabilities = std::move(greeting_capabilities);
    if (entry->successes_in_row >= rise_) {
      status.health = BackendHealth::Up;
      entry->ever_up = true;
    }
  } else {
    entry->successes_in_row = 0;
    ++entry->failures_in_row;
    status.last_error = std::move(error);
    // A backend never seen up gets no benefit of the doubt.
    if (!entry->ever_up || entry->failures_in_row >= fall_) status.health = BackendHealth::Down;
  }
  if (status.health == before) return std::nullopt;
  return status.health;
}

bool Backends::set_draining(std::string_view name, bool draining) {
  std::lock_guard lock(mutex_);
  auto* entry = lookup(std::string(name));
  if (!entry) return false;
  entry->status.draining = draining;
  return true;
}

std::vector<BackendStatus> Backends::snapshot() const {
  std::lock_guard lock(mutex_);
  std::vector<BackendStatus> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.push_back(entry.status);
  std::stable_partition(out.begin(), out.end(), [](const BackendStatus& s) { return s.configured; });
  return out;
}

std::optional<BackendStatus> Backends::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  const auto* entry = lookup(std::string(name));
  if (!entry) return std::nullopt;
  return entry->status;
}

std::size_t Backends::untracked_sessions() const {
  std::lock_guard lock(mutex_);
  return untracked_sessions_;
}

std::vector<Backend> Backends::to_check() const {
  std::lock_guard lock(mutex_);
  std::vector<Backend> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.push_back(entry.status.backend);
  return out;
}

std::string Backends::shared_capabilities() const {
  std::lock_guard lock(mutex_);
  std::optional<std::vector<std::string>> shared;
  for (const auto& entry : entries_) {
    if (entry.status.health != BackendHealth::Up || entry.status.capabilities.empty()) continue;
    auto mine = prelogin_capabilities(entry.status.capabilities);
    if (!shared) {
      shared = std::move(mine);
      continue;
    }
    std::erase_if(*shared, [&](const std::string& c) {
      return std::none_of(mine.begin(), mine.end(), [&](const std::string& m) { return imap::iequals(c, m); });
    });
  }
  std::string out;
  if (!shared) return out;
  for (const auto& c : *shared) out += (out.empty() ? "" : " ") + c;
  return out;
}

std::string Backends::metric_label(const Backend& b) const {
  auto name = b.name();
  std::lock_guard lock(mutex_);
  return lookup(name) ? name : "other";
}

}  // namespace imapscope::route
