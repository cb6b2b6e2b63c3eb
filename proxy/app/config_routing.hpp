// The "routing" key of the config file and the --route-* flags (routing mode: see
// docs/configuration.md, "Routing").
#pragma once

#include <string>

#include "proxy/transport/settings.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::app {

// Reads "routing": {...}; throws util::InputError naming the file and the key.
void read_routing(util::JsonReader r, transport::RoutingSettings& routing);

// "host:port" ("[v6]:port") as a backend reached with `tls`; throws naming `where`.
route::Backend parse_backend(const std::string& text, route::BackendTls tls, const std::string& where);

}  // namespace imapscope::app
