#include "proxy/transport/tls_names.hpp"

#include <algorithm>

namespace imapscope::transport {
namespace {

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

}  // namespace

bool tls_name_matches(std::string_view pattern, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (pattern.empty() || host.empty()) return false;
  if (pattern.substr(0, 2) != "*.") return equal_ignoring_case(pattern, host);
  // The wildcard takes the host's whole first label, which can't be empty.
  const auto dot = host.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  return equal_ignoring_case(pattern.substr(1), host.substr(dot));
}

std::vector<std::size_t> certificates_for(const std::vector<std::vector<std::string>>& names, std::string_view host) {
  std::vector<std::size_t> found;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (std::any_of(names[i].begin(), names[i].end(), [&](const std::string& n) { return tls_name_matches(n, host); })) {
      found.push_back(i);
    }
  }
  return found;
}

}  // namespace imapscope::transport
