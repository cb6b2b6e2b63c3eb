// Which certificate answers a client's SNI: a certificate's names (its SAN DNS
// entries, or its CN when it has none) matched against the name asked for.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace imapscope::transport {

// RFC 6125 matching, case-insensitive: "*.example.org" stands for exactly one
// label ("a.example.org", not "example.org" nor "a.b.example.org"); a trailing
// dot of the host is ignored.
bool tls_name_matches(std::string_view pattern, std::string_view host);

// The indexes of the certificates (their names, in configured order) that answer
// host, in order; empty when none does.
std::vector<std::size_t> certificates_for(const std::vector<std::vector<std::string>>& names, std::string_view host);

}  // namespace imapscope::transport
