// What the admin address answers (see docs/inspector.md, "Admin address"): /metrics, the
// live view of sessions and their events (JSON, or a server-sent-event tail), the
// diagnostics' findings (recent ones, and counts per user),
// on-demand captures, the backends of routing mode (list, drain, kick), the live page
// at /, and /healthz and /readyz for probes (Kubernetes). Everything but the probes (and /metrics on loopback) needs the
// credential; AdminAccess says who may come in and how (admin_access.hpp).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "proxy/app/admin_access.hpp"
#include "proxy/diagnose/diagnostics.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/observe/metrics.hpp"
#include "proxy/route/backends.hpp"
#include "proxy/transport/http_server.hpp"

namespace imapscope::app {

// Ends the sessions a kick names (each with a BYE at a random time within the
// spread); returns how many it will end.
using KickFunction = std::function<std::size_t(const route::KickRequest&)>;

// Routing mode's operations: without them (transparent mode) /api/backends and
// /api/kick answer 404.
struct AdminRouting {
  std::shared_ptr<route::Backends> backends;
  KickFunction kick;
};

class AdminApi {
 public:
  // metrics, inspector and diagnostics may be null (that part answers 404).
  AdminApi(std::shared_ptr<observe::Metrics> metrics, std::shared_ptr<inspect::Inspector> inspector,
           std::shared_ptr<diagnose::Diagnostics> diagnostics, AdminAccess access);

  transport::HttpResponse handle(const transport::HttpRequest& request);
  // The metrics address ("metrics" / --metrics): /metrics, /healthz and /readyz,
  // open (bounded labels, no user names), and nothing else. `access` checks its Host.
  transport::HttpResponse handle_metrics_only(const transport::HttpRequest& request, const AdminAccess& access);
  // For /readyz: whether new sessions are taken (false while draining).
  void set_readiness(std::function<bool()> ready) { ready_ = std::move(ready); }
  void set_routing(AdminRouting routing) { routing_ = std::move(routing); }

 private:
  std::optional<transport::HttpResponse> probe_or_metrics(const transport::HttpRequest& request) const;
  transport::HttpResponse sessions() const;
  transport::HttpResponse session(std::uint64_t id) const;
  transport::HttpResponse events(std::uint64_t id, const transport::HttpRequest& request) const;
  transport::HttpResponse captures(const transport::HttpRequest& request, std::string_view rest);
  transport::HttpResponse findings() const;
  // admin_routing.cpp
  transport::HttpResponse backends(const transport::HttpRequest& request, std::string_view rest);
  transport::HttpResponse kick(const transport::HttpRequest& request);

  std::shared_ptr<observe::Metrics> metrics_;
  std::shared_ptr<inspect::Inspector> inspector_;
  std::shared_ptr<diagnose::Diagnostics> diagnostics_;
  AdminAccess access_;
  std::function<bool()> ready_;
  AdminRouting routing_;
};

// The inspector's own series for /metrics: transcript lines written and dropped,
// captures running, sessions in the live view.
void add_inspector_metrics(observe::Metrics& metrics, std::shared_ptr<inspect::Inspector> inspector);

// The live sessions page (HTML, script and style in one).
const std::string& admin_page();

}  // namespace imapscope::app
