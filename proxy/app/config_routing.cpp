#include "proxy/app/config_routing.hpp"

#include "proxy/app/config.hpp"
#include "proxy/app/config_parts.hpp"
#include "proxy/util/private_files.hpp"

namespace imapscope::app {
namespace {

using Reader = util::JsonReader;

// A password for a backend login (master user, health check): a secret file.
std::string read_password_file(Reader& r, const std::string& key) {
  if (!r.has(key)) return {};
  const auto file = r.string(key, "");
  try {
    return util::read_secret_file(file);
  } catch (const std::exception& e) {
    r.fail(key, e.what());
  }
}

void read_health(Reader r, route::HealthSettings& h) {
  h.interval = millis(r, "interval_ms", h.interval, 100);
  h.timeout = millis(r, "timeout_ms", h.timeout, 100);
  h.fall = static_cast<unsigned>(r.number("fall", h.fall, 1, 100));
  h.rise = static_cast<unsigned>(r.number("rise", h.rise, 1, 100));
  h.login_user = r.string("login_user", "");
  h.login_password = read_password_file(r, "login_password_file");
  if (h.login_user.empty() != h.login_password.empty()) {
    r.fail(h.login_user.empty() ? "login_password_file" : "login_user", "goes with the other: a test login needs both");
  }
  r.reject_unknown();
}

}  // namespace

route::Backend parse_backend(const std::string& text, route::BackendTls tls, const std::string& where) {
  const auto endpoint = parse_endpoint(text, where);
  return route::Backend{endpoint.host, endpoint.port, tls};
}

void read_routing(Reader r, transport::RoutingSettings& routing) {
  routing.http_url = r.string("http", "");
  if (!routing.http_url.empty() && routing.http_url.rfind("http://", 0) != 0) {
    r.fail("http", "must be an http:// URL (the lookup service is on a trusted network, as nginx's auth_http)");
  }
  routing.http_timeout = millis(r, "http_timeout_ms", routing.http_timeout, 100);
  routing.map_file = r.string("map", "");
  routing.cache_hit = std::chrono::seconds(r.number("cache_hit_s", routing.cache_hit.count(), 0, 86'400));
  routing.cache_miss = std::chrono::seconds(r.number("cache_miss_s", routing.cache_miss.count(), 0, 86'400));
  routing.capabilities = r.string("capabilities", "");
  const auto tls = r.choice("backend_tls", "none", {"none", "tls", "starttls"});
  routing.backend_tls = tls == "tls"        ? route::BackendTls::Implicit
                        : tls == "starttls" ? route::BackendTls::Starttls
                                            : route::BackendTls::None;
  routing.upstream_ca = r.string("upstream_ca", "");
  routing.verify = r.boolean("verify", true);
  const auto forward = r.choice("forward_client", "none", {"none", "proxy-v1", "proxy-v2", "id"});
  routing.forward_client = parse_forwarding(forward);
  routing.master_user = r.string("master_user", "");
  routing.master_password = read_password_file(r, "master_password_file");
  if (routing.master_user.empty() != routing.master_password.empty()) {
    r.fail(routing.master_user.empty() ? "master_password_file" : "master_user", "goes with the other");
  }
  const auto backends = r.strings("backends");
  for (std::size_t i = 0; i < backends.size(); ++i) {
    routing.backends.push_back(parse_backend(backends[i], routing.backend_tls, r.path("backends/" + std::to_string(i))));
  }
  if (r.has("health")) read_health(r.object("health"), routing.health);
  routing.kick_spread = millis(r, "kick_spread_ms", routing.kick_spread, 0);
  r.reject_unknown();
  if (!routing.enabled()) r.fail("map", "routing needs \"map\" or \"http\" (or both)");
}

}  // namespace imapscope::app
