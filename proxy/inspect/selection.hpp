// Which sessions get a transcript: all, or those matching every selector given
// (users, client families, client addresses as CIDR blocks), each kept with the
// sample ratio. Users and families are known only after login / identification,
// so a session's transcript waits for them (bounded) before it is kept or dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/util/cidr.hpp"

namespace imapscope::inspect {

struct Selection {
  std::vector<std::string> users;    // lower case
  std::vector<std::string> clients;  // client families
  std::vector<util::Cidr> addresses;
  double sample = 1.0;               // 0..1

  // At connection: false means never (address or sample).
  bool admits_connection(std::string_view client_address, double random01) const;
  bool wants_user() const { return !users.empty(); }
  bool wants_client() const { return !clients.empty(); }
  bool user_matches(std::string_view user) const;
  bool client_matches(std::string_view family) const;
};

}  // namespace imapscope::inspect
