#include "proxy/diagnose/registry.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"
#include "proxy/util/log.hpp"
#include "proxy/util/private_files.hpp"

namespace imapscope::diagnose {
namespace {

constexpr auto kSaveEvery = std::chrono::seconds(5);
constexpr std::size_t kPruneAbove = 100'000;  // sweep and failure entries before old ones are dropped

// Keyed (the label key): whoever reads the state file can't test it against a list
// of addresses.
std::string key_of(std::string_view user, std::string_view mailbox, std::string_view key) {
  std::string input;
  input.reserve(user.size() + mailbox.size() + 1);
  input.append(user).push_back('\0');
  input.append(mailbox_key(mailbox));
  return inspect::keyed_digest_hex(key, input, 16);  // 128 bits tell mailboxes apart
}

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

}  // namespace

std::string mailbox_key(std::string_view mailbox) {
  return imap::iequals(mailbox, "INBOX") ? std::string("INBOX") : std::string(mailbox);
}

Registry::Registry(const Options& options) : options_(options) {
  if (!options_.state_file.empty()) {
    // The file is replaced, never written in place: its folder must be one nobody
    // else can put a name in.
    const auto folder = std::filesystem::path(options_.state_file).parent_path();
    try {
      util::ensure_private_dir(folder.empty() ? std::string(".") : folder.string());
    } catch (const std::exception& e) {
      throw std::runtime_error("diagnostics state file " + options_.state_file + ": its folder " + e.what());
    }
  }
  load();
}

Registry::~Registry() { save(); }

void Registry::load() {
  if (options_.state_file.empty()) return;
  // Never through a link: one planted at the name is ignored here and replaced by
  // the next save.
  const int fd = ::open(options_.state_file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT) {  // ENOENT: first start
      util::log_line(util::LogLevel::Warning, "event=diagnostics_state_ignored file=" +
                                                  util::log_quote(options_.state_file) + " reason=" +
                                                  util::log_quote(errno == ELOOP ? "a symbolic link: not followed"
                                                                                 : std::strerror(errno)));
    }
    return;
  }
  std::string text;
  char buffer[65536];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::istringstream in(text);
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::istringstream fields(line);
    std::string key;
    std::uint64_t value = 0;
    std::int64_t seen = 0;
    if (!(fields >> key >> value >> seen) || key.size() != 32 || value > UINT32_MAX) {
      // A damaged state file costs what it holds, not the start-up.
      util::log_line(util::LogLevel::Warning, "event=diagnostics_state_ignored file=" +
                                                  util::log_quote(options_.state_file) + " line=" +
                                                  std::to_string(number) + " reason=\"not KEY UIDVALIDITY SEEN\"");
      uidvalidity_.clear();
      return;
    }
    uidvalidity_[key] = Remembered{static_cast<std::uint32_t>(value), seen};
  }
}

void Registry::save() {
  std::unique_lock lock(mutex_);
  if (!dirty_ || options_.state_file.empty()) return;
  std::vector<std::pair<std::string, Remembered>> entries(uidvalidity_.begin(), uidvalidity_.end());
  dirty_ = false;
  saved_at_ = Clock::now();
  lock.unlock();
  // A fresh owner-only file renamed over the name: a crash leaves the old or the new,
  // and a link at the name is replaced, not followed.
  std::ostringstream out;
  for (const auto& [key, r] : entries) out << key << ' ' << r.uidvalidity << ' ' << r.seen << '\n';
  try {
    util::replace_private_file(options_.state_file, out.str());
  } catch (const std::exception& e) {
    util::log_line(util::LogLevel::Warning, "event=diagnostics_state_not_saved file=" +
                                                util::log_quote(options_.state_file) + " reason=" + util::log_quote(e.what()));
  }
}

void Registry::maybe_save_locked(std::unique_lock<std::mutex>& lock) {
  if (!dirty_ || options_.state_file.empty() || Clock::now() - saved_at_ < kSaveEvery) return;
  lock.unlock();
  save();
}

std::optional<std::uint32_t> Registry::uidvalidity(std::string_view user, std::string_view mailbox,
                                                    std::uint32_t value) {
  const auto key = key_of(user, mailbox, options_.label_key);
  std::unique_lock lock(mutex_);
  auto [it, added] = uidvalidity_.try_emplace(key);
  std::optional<std::uint32_t> before;
  if (!added && it->second.uidvalidity != value) before = it->second.uidvalidity;
  if (added || before) dirty_ = true;
  it->second.uidvalidity = value;
  it->second.seen = unix_now();
  if (added && uidvalidity_.size() > options_.state_entries) {
    // Forget the mailbox seen longest ago.
    auto oldest = std::min_element(uidvalidity_.begin(), uidvalidity_.end(),
                                   [](const auto& a, const auto& b) { return a.second.seen < b.second.seen; });
    uidvalidity_.erase(oldest);
  }
  maybe_save_locked(lock);
  return before;
}

Registry::Resweep Registry::swept(std::string_view user, std::string_view mailbox, std::uint32_t messages,
                                  std::uint64_t bytes, Clock::time_point now) {
  const auto key = key_of(user, mailbox, options_.label_key);
  const auto& t = options_.thresholds;
  const auto window = t.resync_repeat_window;
  std::lock_guard lock(mutex_);
  if (sweeps_.size() > kPruneAbove) {
    std::erase_if(sweeps_, [&](const auto& s) { return s.second.at.empty() || now - s.second.at.back().first > window; });
  }
  auto& s = sweeps_[key];
  Resweep out;
  if (!s.at.empty() && now - s.at.back().first <= window) out.since = now - s.at.back().first;
  s.at.emplace_back(now, bytes);
  // More sweeps than this within the window have long reached any threshold.
  while (s.at.size() > 64 || now - s.at.front().first > window) s.at.pop_front();
  out.sweeps = static_cast<std::uint32_t>(s.at.size());
  for (std::size_t i = 1; i < s.at.size(); ++i) out.bytes += s.at[i].second;  // the first is the sync any client does
  // Once per window and mailbox, however often it goes on.
  out.report = out.sweeps >= 2 && messages >= t.resync_repeat_min_messages && out.bytes >= t.resync_repeat_min_bytes &&
               (s.reported == Clock::time_point{} || now - s.reported > window);
  if (out.report) s.reported = now;
  return out;
}

std::uint32_t Registry::user_connected(std::string_view user) {
  std::lock_guard lock(mutex_);
  auto it = connections_.find(user);
  if (it == connections_.end()) it = connections_.emplace(std::string(user), 0).first;
  return ++it->second;
}

void Registry::user_disconnected(std::string_view user) {
  std::lock_guard lock(mutex_);
  auto it = connections_.find(user);
  if (it == connections_.end()) return;
  if (--it->second == 0) connections_.erase(it);
}

std::uint32_t Registry::idle_on(std::string_view user, std::uint64_t session, std::string_view mailbox) {
  std::lock_guard lock(mutex_);
  auto it = idling_.find(user);
  if (it == idling_.end()) it = idling_.emplace(std::string(user), std::map<std::uint64_t, std::string>{}).first;
  it->second[session] = mailbox_key(mailbox);
  std::set<std::string_view> folders;
  for (const auto& [id, folder] : it->second) folders.insert(folder);
  return static_cast<std::uint32_t>(folders.size());
}

void Registry::idle_off(std::string_view user, std::uint64_t session) {
  std::lock_guard lock(mutex_);
  auto it = idling_.find(user);
  if (it == idling_.end()) return;
  it->second.erase(session);
  if (it->second.empty()) idling_.erase(it);
}

std::pair<std::uint32_t, bool> Registry::login_failed(std::string_view address, Clock::time_point now) {
  const auto window = options_.thresholds.login_failure_window;
  std::lock_guard lock(mutex_);
  if (failures_.size() > kPruneAbove) {
    std::erase_if(failures_, [&](const auto& f) { return f.second.at.empty() || now - f.second.at.back() > window; });
  }
  auto it = failures_.find(address);
  if (it == failures_.end()) it = failures_.emplace(std::string(address), Failures{}).first;
  auto& f = it->second;
  f.at.push_back(now);
  while (!f.at.empty() && now - f.at.front() > window) f.at.pop_front();
  const auto count = static_cast<std::uint32_t>(f.at.size());
  // Once per window and address, however long the storm goes on.
  const bool report = count >= options_.thresholds.login_failures &&
                      (f.reported == Clock::time_point{} || now - f.reported > window);
  if (report) f.reported = now;
  return {count, report};
}

}  // namespace imapscope::diagnose
