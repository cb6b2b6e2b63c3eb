// What the listeners of a routing proxy share at run time (built by Proxy from
// ProxySettings::routing): who answers lookups, the backend pool, and how backends
// are reached. Read-only for the relays, shared by every event loop.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <asio/ssl/context.hpp>

#include "proxy/route/backends.hpp"
#include "proxy/route/replay.hpp"
#include "proxy/route/telemetry.hpp"
#include "proxy/transport/settings.hpp"

namespace imapscope::transport {

class Router;

// How a backend is reached, in the upstream connection's terms.
inline UpstreamTls upstream_tls(route::BackendTls tls) {
  switch (tls) {
    case route::BackendTls::Implicit: return UpstreamTls::Implicit;
    case route::BackendTls::Starttls: return UpstreamTls::Starttls;
    case route::BackendTls::None: break;
  }
  return UpstreamTls::None;
}

struct RoutingRuntime {
  Router* router = nullptr;
  route::Backends* backends = nullptr;
  route::RouteTelemetry* telemetry = nullptr;  // null: no metrics
  asio::ssl::context* backend_tls = nullptr;   // for backends reached with TLS or STARTTLS
  bool verify = true;                          // their certificates and names
  ClientForwarding forward_client = ClientForwarding::None;
  std::optional<route::MasterUser> master;     // for routes that ask for a master login
  std::string capabilities;                    // the pre-login list; empty: learnt from the backends
  std::chrono::milliseconds connect_timeout{10'000};
};

}  // namespace imapscope::transport
