#include "proxy/route/backend.hpp"

namespace imapscope::route {

std::string Backend::name() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

}  // namespace imapscope::route
