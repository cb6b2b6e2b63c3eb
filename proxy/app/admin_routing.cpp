// Routing mode's operations on the admin address (docs/operations.md): the backends
// with their health, drain and undrain, and kicking a user's or a backend's sessions.
// Bodies are small JSON objects, checked field by field: a wrong one is a 400 that
// says which field, never a half-done operation.
#include <ctime>

#include <nlohmann/json.hpp>

#include "proxy/app/admin_api.hpp"

namespace imapscope::app {
namespace {

using transport::HttpRequest;
using transport::HttpResponse;
using json = nlohmann::json;

constexpr std::size_t kMaxUser = 320;    // an address at its longest (RFC 5321's 64 + @ + 255)
constexpr std::size_t kMaxReason = 200;  // the BYE's text
constexpr std::int64_t kMaxSpreadMs = 3'600'000;

HttpResponse json_response(int status, const json& body) {
  return HttpResponse::json(status, body.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

// The API's word for a backend's state: an operator's drain comes first.
std::string state_of(const route::BackendStatus& status) {
  return status.draining ? "draining" : std::string(route::backend_health_name(status.health));
}

// A text an operator gives that ends up on the wire (a BYE) or in a lookup: printable,
// one line, bounded.
bool printable_line(std::string_view text, std::size_t max) {
  if (text.size() > max) return false;
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// The body as a JSON object, or why not.
std::optional<json> object_body(const HttpRequest& request, std::string& error) {
  auto body = json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    error = "the body must be a JSON object";
    return std::nullopt;
  }
  return body;
}

// An optional string field: its value, or why it is refused.
bool string_field(const json& body, const char* name, std::size_t max, std::string& out, std::string& error) {
  const auto it = body.find(name);
  if (it == body.end()) return true;
  if (!it->is_string() || !printable_line(it->get_ref<const std::string&>(), max)) {
    error = std::string("\"") + name + "\" must be a string of at most " + std::to_string(max) +
            " printable characters";
    return false;
  }
  out = it->get<std::string>();
  return true;
}

}  // namespace

HttpResponse AdminApi::backends(const HttpRequest& request, std::string_view rest) {
  if (!routing_.backends) return HttpResponse::error(404, "not in routing mode (no \"routing\" in the config)");
  if (rest.empty() || rest == "/") {
    if (request.method != "GET") return HttpResponse::error(405, "GET only");
    json list = json::array();
    for (const auto& s : routing_.backends->snapshot()) {
      list.push_back({{"name", s.backend.name()},
                      {"state", state_of(s)},
                      {"health", route::backend_health_name(s.health)},
                      {"draining", s.draining},
                      {"sessions", s.sessions},
                      {"last_check", s.last_check == std::chrono::system_clock::time_point{} ? json(nullptr)
                                                                                             : json(rfc3339(s.last_check))},
                      {"last_error", s.last_error},
                      {"capabilities", s.capabilities},
                      {"configured", s.configured}});
    }
    return json_response(200, {{"backends", std::move(list)}});
  }
  const bool drain = rest == "/drain";
  if (!drain && rest != "/undrain") return HttpResponse::error(404, "not found");
  if (request.method != "POST") return HttpResponse::error(405, "POST only");
  std::string error, name;
  const auto body = object_body(request, error);
  if (!body) return HttpResponse::error(400, error);
  if (!string_field(*body, "backend", 300, name, error)) return HttpResponse::error(400, error);
  if (name.empty()) return HttpResponse::error(400, "\"backend\" is needed: a backend's name, as \"127.0.0.1:1143\"");
  if (!routing_.backends->set_draining(name, drain)) {
    return HttpResponse::error(404, "no backend \"" + name + "\" (GET /api/backends lists them)");
  }
  const auto status = routing_.backends->find(name);
  return json_response(200, {{"backend", name}, {"state", status ? state_of(*status) : "unknown"}});
}

HttpResponse AdminApi::kick(const HttpRequest& request) {
  if (!routing_.backends || !routing_.kick) return HttpResponse::error(404, "not in routing mode (no \"routing\" in the config)");
  if (request.method != "POST") return HttpResponse::error(405, "POST only");
  std::string error;
  const auto body = object_body(request, error);
  if (!body) return HttpResponse::error(400, error);
  route::KickRequest kick;
  kick.reason = "Disconnected by the administrator";
  if (!string_field(*body, "user", kMaxUser, kick.user, error) ||
      !string_field(*body, "backend", 300, kick.backend, error) ||
      !string_field(*body, "reason", kMaxReason, kick.reason, error)) {
    return HttpResponse::error(400, error);
  }
  if (kick.user.empty() && kick.backend.empty()) {
    return HttpResponse::error(400, "say whose sessions: \"user\" or \"backend\" (or both)");
  }
  if (kick.reason.empty()) return HttpResponse::error(400, "\"reason\" must not be empty");
  if (const auto it = body->find("spread_ms"); it != body->end()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > kMaxSpreadMs) {
      return HttpResponse::error(400, "\"spread_ms\" must be a whole number of milliseconds from 0 to " +
                                          std::to_string(kMaxSpreadMs));
    }
    kick.spread = std::chrono::milliseconds(it->get<std::int64_t>());
  }
  if (!kick.backend.empty() && !routing_.backends->find(kick.backend)) {
    return HttpResponse::error(404, "no backend \"" + kick.backend + "\" (GET /api/backends lists them)");
  }
  return json_response(200, {{"kicked", routing_.kick(kick)}});
}

}  // namespace imapscope::app
