// The admin address and the metrics address, started from the settings: the
// admin token made or read, budgets applied, each bound or a ConfigError saying why.
#pragma once

#include <functional>
#include <memory>

#include "proxy/app/admin_api.hpp"
#include "proxy/app/config.hpp"
#include "proxy/diagnose/diagnostics.hpp"
#include "proxy/inspect/inspector.hpp"
#include "proxy/observe/metrics.hpp"
#include "proxy/transport/http_server.hpp"

namespace imapscope::app {

struct AdminServers {
  std::unique_ptr<transport::HttpServer> admin;    // when admin_enabled
  std::unique_ptr<transport::HttpServer> metrics;  // when "metrics" / --metrics is set
};

// `ready` answers /readyz; `routing`: routing mode's operations (empty in transparent
// mode). Call after the state folder is checked (the token lives there).
AdminServers start_admin_servers(const Config& config, std::shared_ptr<observe::Metrics> metrics,
                                 std::shared_ptr<inspect::Inspector> inspector,
                                 std::shared_ptr<diagnose::Diagnostics> diagnostics, std::function<bool()> ready,
                                 AdminRouting routing = {});

}  // namespace imapscope::app
