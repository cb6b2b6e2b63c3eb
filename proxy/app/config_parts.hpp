// What the config loader's files (config.cpp, config_routing.cpp) read alike.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "proxy/transport/settings.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::app {

// A duration in milliseconds under key, min..86400000 (a day).
std::chrono::milliseconds millis(util::JsonReader& r, const std::string& key, std::chrono::milliseconds fallback,
                                 std::uint64_t min = 1);

// "proxy-v1", "proxy-v2", "id" or "none" (what the reader's choice() let through).
transport::ClientForwarding parse_forwarding(const std::string& mode);

}  // namespace imapscope::app
