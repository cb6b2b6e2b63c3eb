#include "proxy/inspect/captures.hpp"

#include <algorithm>
#include <stdexcept>

#include "proxy/imap/abnf.hpp"

namespace imapscope::inspect {
namespace {

constexpr std::size_t kMaxCaptures = 64;
constexpr double kMaxDurationSeconds = 7 * 24 * 3600;
constexpr double kDefaultDurationSeconds = 600;

std::string text_field(const nlohmann::json& request, const char* key) {
  const auto it = request.find(key);
  if (it == request.end() || it->is_null()) return {};
  if (!it->is_string()) throw std::invalid_argument(std::string(key) + ": must be a string");
  return it->get<std::string>();
}

}  // namespace

Capture Captures::start(const nlohmann::json& request, std::int64_t now_us) {
  if (!request.is_object()) throw std::invalid_argument("the body must be a JSON object");
  for (const auto& [key, value] : request.items()) {
    if (key != "user" && key != "client" && key != "address" && key != "duration_s") {
      throw std::invalid_argument(key + ": unknown key (user, client, address, duration_s)");
    }
  }
  Capture c;
  c.user = imap::ascii_lower(text_field(request, "user"));
  c.client = text_field(request, "client");
  c.address_text = text_field(request, "address");
  if (!c.address_text.empty()) {
    c.address = util::Cidr::parse(c.address_text);
    if (!c.address) throw std::invalid_argument("address: \"" + c.address_text + "\" is not an address or CIDR block");
  }
  if (c.user.empty() && c.client.empty() && !c.address) {
    throw std::invalid_argument("name a user, a client or an address to capture");
  }
  double seconds = kDefaultDurationSeconds;
  if (const auto it = request.find("duration_s"); it != request.end()) {
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > kMaxDurationSeconds) {
      throw std::invalid_argument("duration_s: must be a number of seconds, more than 0 and at most 604800");
    }
    seconds = it->get<double>();
  }
  c.created_us = now_us;
  c.until_us = now_us + static_cast<std::int64_t>(seconds * 1e6);
  std::lock_guard lock(mutex_);
  expire(now_us);
  if (captures_.size() >= kMaxCaptures) throw std::invalid_argument("too many captures running (64): stop one first");
  c.id = next_id_++;
  captures_.push_back(c);
  generation_.fetch_add(1, std::memory_order_release);
  return c;
}

bool Captures::stop(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto it = std::find_if(captures_.begin(), captures_.end(), [&](const Capture& c) { return c.id == id; });
  if (it == captures_.end()) return false;
  captures_.erase(it);
  generation_.fetch_add(1, std::memory_order_release);
  return true;
}

std::vector<Capture> Captures::list(std::int64_t now_us) {
  std::lock_guard lock(mutex_);
  expire(now_us);
  return captures_;
}

std::optional<Capture> Captures::match(const CaptureSubject& subject, std::int64_t now_us) {
  std::lock_guard lock(mutex_);
  expire(now_us);
  for (auto& c : captures_) {
    if (!c.user.empty() && (!subject.user || imap::ascii_lower(*subject.user) != c.user)) continue;
    if (!c.client.empty() && (!subject.client || *subject.client != c.client)) continue;
    if (c.address && !c.address->contains(subject.address)) continue;
    ++c.sessions;
    return c;
  }
  return std::nullopt;
}

bool Captures::active(std::uint64_t id, std::int64_t now_us) {
  std::lock_guard lock(mutex_);
  expire(now_us);
  return std::any_of(captures_.begin(), captures_.end(), [&](const Capture& c) { return c.id == id; });
}

void Captures::expire(std::int64_t now_us) {
  const auto before = captures_.size();
  std::erase_if(captures_, [&](const Capture& c) { return c.until_us <= now_us; });
  if (captures_.size() != before) generation_.fetch_add(1, std::memory_order_release);
}

nlohmann::json Captures::to_json(const Capture& c, std::int64_t now_us) {
  nlohmann::json out{{"id", c.id},
                     {"created_us", c.created_us},
                     {"until_us", c.until_us},
                     {"remaining_s", static_cast<double>(std::max<std::int64_t>(0, c.until_us - now_us)) / 1e6},
                     {"sessions", c.sessions}};
  if (!c.user.empty()) out["user"] = c.user;
  if (!c.client.empty()) out["client"] = c.client;
  if (!c.address_text.empty()) out["address"] = c.address_text;
  return out;
}

}  // namespace imapscope::inspect
