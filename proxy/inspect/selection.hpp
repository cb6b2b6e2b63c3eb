// Which sessions get a transcript: all, or those matching every selector given
// (users, client families, client addresses as CIDR blocks), each kept with the
// sample ratio. Users and families are known only after login / identification,
// so a session's transcript waits for them (bounded) before it is kept or dropped.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imapscope::inspect {

struct Cidr {
  std::array<unsigned char, 16> address{};
  bool v6 = false;
  unsigned prefix = 0;
  // "192.0.2.0/24", "2001:db8::/32", or an address alone; nullopt when it isn't one.
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(std::string_view address) const;  // an address without port
};

struct Selection {
  std::vector<std::string> users;    // lower case
  std::vector<std::string> clients;  // client families
  std::vector<Cidr> addresses;
  double sample = 1.0;               // 0..1

  // At connection: false means never (address or sample).
  bool admits_connection(std::string_view client_address, double random01) const;
  bool wants_user() const { return !users.empty(); }
  bool wants_client() const { return !clients.empty(); }
  bool user_matches(std::string_view user) const;
  bool client_matches(std::string_view family) const;
};

// "127.0.0.1:51234" / "::1:51234" -> the address part.
std::string_view address_of(std::string_view peer);

}  // namespace imapscope::inspect
