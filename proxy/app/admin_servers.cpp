#include "proxy/app/admin_servers.hpp"

#include "proxy/app/admin_api.hpp"
#include "proxy/util/log.hpp"
#include "proxy/util/private_files.hpp"

namespace imapscope::app {
namespace {

transport::HttpLimits http_limits(const AdminLimits& l) {
  transport::HttpLimits out;
  out.max_connections = l.connections;
  out.max_streams = l.streams;
  out.stream_max = std::chrono::seconds(l.stream_max_s);
  out.head_timeout = std::chrono::milliseconds(l.head_timeout_ms);
  out.write_timeout = std::chrono::milliseconds(l.write_timeout_ms);
  return out;
}

std::unique_ptr<transport::HttpServer> listen(const transport::Endpoint& address, transport::HttpHandler handler,
                                              const transport::HttpLimits& limits, const std::string& what) {
  try {
    return std::make_unique<transport::HttpServer>(address, std::move(handler), limits);
  } catch (const std::exception& e) {
    throw ConfigError(what + " " + address.to_string() + ": can't listen there (" + e.what() + ")");
  }
}

// Why a token file and not a unix socket: Prometheus, Kubernetes probes and
// browsers speak TCP, and a file only its owner can read guards the token as a
// socket's permissions would guard the socket.
std::string admin_token(const Config& config) {
  if (!config.admin_token.empty()) return config.admin_token;
  const auto path = config.state_dir + "/admin-token";
  try {
    return util::load_or_create_secret(path, 32);
  } catch (const std::exception& e) {
    throw ConfigError("admin token: " + std::string(e.what()));
  }
}

}  // namespace

AdminServers start_admin_servers(const Config& config, std::shared_ptr<observe::Metrics> metrics,
                                 std::shared_ptr<inspect::Inspector> inspector,
                                 std::shared_ptr<diagnose::Diagnostics> diagnostics, std::function<bool()> ready,
                                 AdminRouting routing) {
  AdminServers out;
  if (!config.admin_enabled && !config.metrics) return out;
  const auto limits = http_limits(config.admin_limits);
  const auto token = config.admin_enabled ? admin_token(config) : std::string();
  auto api = std::make_shared<AdminApi>(metrics, inspector, diagnostics,
                                        AdminAccess(token, config.admin, config.admin_hosts));
  api->set_readiness(std::move(ready));
  api->set_routing(std::move(routing));
  if (config.admin_enabled) {
    const auto address = config.admin.to_string();
    out.admin = listen(config.admin, [api](const transport::HttpRequest& r) { return api->handle(r); }, limits,
                       "admin address");
    util::log_line(util::LogLevel::Info,
                   "event=admin_listening address=" + address + " page=http://" + address + "/ metrics=http://" +
                       address + "/metrics token=" +
                       (config.admin_token.empty() ? util::log_quote(config.state_dir + "/admin-token")
                                                   : std::string("configured")));
  }
  if (config.metrics) {
    const auto address = config.metrics->to_string();
    auto access = std::make_shared<AdminAccess>(std::string(), *config.metrics, config.admin_hosts);
    out.metrics = listen(
        *config.metrics,
        [api, access](const transport::HttpRequest& r) { return api->handle_metrics_only(r, *access); }, limits,
        "metrics address");
    util::log_line(util::LogLevel::Info, "event=metrics_listening address=" + address + " metrics=http://" + address +
                                             "/metrics");
  }
  return out;
}

}  // namespace imapscope::app
