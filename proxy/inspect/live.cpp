#include "proxy/inspect/live.hpp"

#include <algorithm>

namespace imapscope::inspect {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

LiveSession::LiveSession(const session::SessionStart& start, const LiveLimits& limits)
    : id_(start.id),
      listener_(start.listener),
      tls_mode_(start.tls),
      client_address_(start.client_address),
      started_us_(now_us()),
      keeps_events_(limits.events > 0),
      events_(limits.events, limits.event_bytes) {}

void LiveSession::add_event(std::string line) {
  if (!keeps_events_) return;
  std::lock_guard lock(mutex_);
  events_.add(std::move(line));
  ++last_sequence_;
}

void LiveSession::pack_events() {
  std::lock_guard lock(mutex_);
  events_.pack();
}

std::vector<std::string> LiveSession::events_after(std::uint64_t after, std::uint64_t& last) const {
  std::lock_guard lock(mutex_);
  last = last_sequence_;
  auto kept = events_.lines();
  const std::uint64_t first = last_sequence_ - kept.size() + 1;  // sequence of the oldest kept
  if (after + 1 > first) kept.erase(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(
                                                      std::min<std::uint64_t>(after + 1 - first, kept.size())));
  return kept;
}

std::vector<std::string> LiveSession::backlog() const {
  std::lock_guard lock(mutex_);
  return events_.lines();
}

nlohmann::json LiveSession::summary(std::int64_t now) const {
  std::lock_guard lock(mutex_);
  const auto& f = facts_;
  nlohmann::json out{{"id", id_},
                     {"listener", listener_},
                     {"tls_mode", tls_mode_},
                     {"client_address", client_address_},
                     {"user", f.user},
                     {"client",
                      {{"family", f.client.family},
                       {"version", f.client.version},
                       {"method", std::string(identify::id_method_name(f.client.method))},
                       {"settled", f.client_settled}}},
                     {"state", f.state},
                     {"mailbox", f.mailbox},
                     {"last_command", f.last_command},
                     {"commands", f.commands},
                     {"bytes", {{"from_client", f.bytes_from_client}, {"from_server", f.bytes_from_server}}},
                     {"tls", f.tls},
                     {"started_us", started_us_},
                     {"age_s", static_cast<double>((closed_ ? closed_us_ : now) - started_us_) / 1e6},
                     {"events", last_sequence_}};
  if (f.last_command_us) out["last_command_age_s"] = static_cast<double>(now - f.last_command_us) / 1e6;
  if (f.capture) out["capture"] = f.capture;
  if (closed_) out["close_reason"] = f.close_reason;
  return out;
}

void LiveSession::close(std::string_view reason) {
  std::lock_guard lock(mutex_);
  closed_ = true;
  closed_us_ = now_us();
  facts_.state = "closed";
  facts_.close_reason = reason;
}

bool LiveSession::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

std::shared_ptr<LiveSession> LiveRegistry::open(const session::SessionStart& start) {
  auto live = std::make_shared<LiveSession>(start, limits_);
  std::lock_guard lock(mutex_);
  active_[start.id] = live;
  return live;
}

void LiveRegistry::closed(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto it = active_.find(id);
  if (it == active_.end()) return;
  if (limits_.recent_closed > 0) {
    recent_.push_back(std::move(it->second));
    if (recent_.size() > limits_.recent_closed) recent_.pop_front();
  }
  active_.erase(it);
}

std::shared_ptr<LiveSession> LiveRegistry::find(std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  if (const auto it = active_.find(id); it != active_.end()) return it->second;
  for (const auto& s : recent_) {
    if (s->id() == id) return s;
  }
  return nullptr;
}

std::vector<std::shared_ptr<LiveSession>> LiveRegistry::active() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<LiveSession>> out;
  out.reserve(active_.size());
  for (const auto& [id, s] : active_) out.push_back(s);
  return out;
}

std::vector<std::shared_ptr<LiveSession>> LiveRegistry::recent() const {
  std::lock_guard lock(mutex_);
  return {recent_.begin(), recent_.end()};
}

}  // namespace imapscope::inspect
