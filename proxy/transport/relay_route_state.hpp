// What a relay in routing mode keeps (relay_route.cpp): the pre-login server until a
// backend took the login, then only the backend and the user (for the pool's count
// and for kicks). Included by relay.cpp and relay_route.cpp only.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "proxy/route/backend.hpp"
#include "proxy/route/prelogin_server.hpp"
#include "proxy/transport/client_address.hpp"
#include "proxy/transport/relay.hpp"

namespace imapscope::transport {

struct Relay::RouteState {
  // Until a backend took the login; then freed, so that an idle routed session keeps
  // no more than its backend and user.
  struct PreLogin {
    explicit PreLogin(route::PreLoginSettings settings) : server(std::move(settings)) {}
    route::PreLoginServer server;
    std::string unconsumed;  // what the session forwarded that the server hasn't taken
    std::unique_ptr<ClientAddresses> client;  // named to each backend (PROXY header, ID)
    bool via_proxy_header = false;    // the client's addresses came in a PROXY header
    bool lookup_running = false;
    bool unavailable_answer = false;  // the last NO was the proxy's own (no penalty for it)
    bool close_after_answer = false;  // the lookup refused for good: end after its NO
    bool release_backend = false;     // the backend said NO: back to the pre-login server
  };
  std::unique_ptr<PreLogin> pre;
  std::optional<route::Backend> backend;  // connected to (and, once counted, logged in)
  std::string user;                       // the login name (kicks by user)
  bool counted = false;                   // the backend pool counts this session
  // A kick's BYE, waiting for the end of the server's message in flight (a FETCH
  // literal is never cut); made by the kick only.
  std::unique_ptr<std::string> kick_bye;
};

}  // namespace imapscope::transport
