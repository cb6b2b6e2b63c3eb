#include "proxy/inspect/selection.hpp"

#include <algorithm>

#include "proxy/imap/abnf.hpp"

namespace imapscope::inspect {

bool Selection::admits_connection(std::string_view client_address, double random01) const {
  if (random01 >= sample) return false;
  if (addresses.empty()) return true;
  const auto address = util::address_of(client_address);
  return std::any_of(addresses.begin(), addresses.end(), [&](const util::Cidr& c) { return c.contains(address); });
}

bool Selection::user_matches(std::string_view user) const {
  const auto lower = imap::ascii_lower(user);
  return std::find(users.begin(), users.end(), lower) != users.end();
}

bool Selection::client_matches(std::string_view family) const {
  return std::find(clients.begin(), clients.end(), family) != clients.end();
}

}  // namespace imapscope::inspect
