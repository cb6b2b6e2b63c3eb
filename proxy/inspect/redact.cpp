#include "proxy/inspect/redact.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"

namespace imapscope::inspect {

std::string user_label(std::string_view user, UserNames policy, std::string_view key) {
  switch (policy) {
    case UserNames::Clear: return std::string(user);
    case UserNames::Redacted: return "***";
    case UserNames::Hashed: break;
  }
  return "u:" + keyed_digest_hex(key, imap::ascii_lower(user), 8);
}

bool carries_credentials(const imap::Command& c) {
  if (c.kind == imap::CommandKind::SaslResponse) return true;
  return c.kind == imap::CommandKind::Tagged && !c.uid &&
         (c.verb == imap::Verb::Login || c.verb == imap::Verb::Authenticate);
}

std::string redacted_text(const imap::Command& c, UserNames policy, std::string_view key) {
  if (c.kind == imap::CommandKind::SaslResponse) return "*** (SASL response, " + std::to_string(c.line.size()) + " bytes)";
  std::string out = std::string(c.tag) + " " + std::string(c.name);
  if (c.verb == imap::Verb::Login) {
    if (!c.args.empty()) {
      const auto user = c.args.front().string_value();
      out += " " + (user ? user_label(*user, policy, key) : std::string("{user}"));
    }
    if (c.args.size() > 1) out += " ***";
    return out;
  }
  // AUTHENTICATE mechanism [initial-response]
  if (!c.args.empty()) out += " " + std::string(c.args.front().text);
  if (c.args.size() > 1) out += " ***";
  return out;
}

std::optional<std::string> sasl_user(std::string_view mechanism, std::string_view payload, bool first_answer) {
  if (payload.size() > 16384) return std::nullopt;  // no SASL answer naming a user is this long
  const auto decoded = base64_decode(payload);
  if (!decoded) return std::nullopt;
  if (imap::iequals(mechanism, "PLAIN")) {
    const auto first = decoded->find('\0');
    if (first == std::string::npos) return std::nullopt;
    const auto second = decoded->find('\0', first + 1);
    if (second == std::string::npos) return std::nullopt;
    return decoded->substr(first + 1, second - first - 1);
  }
  if (imap::iequals(mechanism, "LOGIN")) {
    if (!first_answer) return std::nullopt;
    return *decoded;
  }
  if (imap::iequals(mechanism, "XOAUTH2")) {
    // "user=" user ^A "auth=Bearer " token ^A ^A
    if (decoded->rfind("user=", 0) != 0) return std::nullopt;
    const auto end = decoded->find('\x01');
    return decoded->substr(5, end == std::string::npos ? std::string::npos : end - 5);
  }
  return std::nullopt;
}

}  // namespace imapscope::inspect
