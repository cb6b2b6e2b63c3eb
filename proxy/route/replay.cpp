#include "proxy/route/replay.hpp"

#include <algorithm>
#include <array>

#include "proxy/imap/abnf.hpp"
#include "proxy/route/command_tokens.hpp"
#include "proxy/route/sasl.hpp"
#include "proxy/util/base64.hpp"

namespace imapscope::route {

namespace {

// The fields a Dovecot backend believes from a trusted proxy (login_trusted_networks):
// the client's address and port, the proxy's own, hop count and session ids.
constexpr std::array<std::string_view, 4> kForwardingFields = {"x-proxy-ttl", "x-session-id", "x-session-ext-id",
                                                               "x-client-transport"};
constexpr std::array<std::string_view, 3> kForwardingPrefixes = {"x-originating-", "x-connected-", "x-forward-"};

std::string cleaned_text(std::string_view text, std::string_view fallback) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxRefusalText));
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  const auto first = out.find_first_not_of(' ');
  if (first == std::string::npos) return std::string(fallback);
  out.erase(0, first);
  if (out.size() > kMaxRefusalText) {
    std::size_t cut = kMaxRefusalText;
    // Back to the start of a UTF-8 sequence (not a continuation byte 10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;
    out.resize(cut);
  }
  out.erase(out.find_last_not_of(' ') + 1);
  return out;
}

std::string tagged_line(std::string_view tag, std::string_view text) {
  std::string line(tag);
  line.append(" ").append(text).append("\r\n");
  return line;
}

}  // namespace

std::string imap_string(std::string_view value) {
  // 8-bit text goes as a literal too: quoted strings are 7-bit (RFC 9051 §9).
  const bool seven_bit = std::none_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  if (auto text = seven_bit ? imap::quoted(value) : std::nullopt) return std::move(*text);
  return "{" + std::to_string(value.size()) + "+}\r\n" + std::string(value);
}

std::vector<std::string> replay_steps(const LoginAttempt& login, const Route& route, const MasterUser* master) {
  if (route.master) {
    if (master == nullptr) return {};
    // PLAIN: authzid NUL authcid NUL passwd (RFC 4616): log in as the user, authenticated
    // as the master user (Dovecot's master passdb).
    std::string message = route.login_user.value_or(login.user);
    message.append(1, '\0').append(master->user).append(1, '\0').append(master->password);
    return {login.tag + " AUTHENTICATE PLAIN " + util::base64_encode(message) + "\r\n"};
  }
  if (route.login_user || route.login_password) {
    return {login.tag + " LOGIN " + imap_string(route.login_user.value_or(login.user)) + " " +
            imap_string(route.login_password.value_or(login.secret)) + "\r\n"};
  }
  return login.steps;
}

bool forwarding_id_field(std::string_view name) {
  const std::string lower = imap::ascii_lower(name);
  for (const auto field : kForwardingFields) {
    if (lower == field) return true;
  }
  for (const auto prefix : kForwardingPrefixes) {
    if (lower.starts_with(prefix)) return true;
  }
  return false;
}

std::string replay_id_command(std::string_view tag, std::string_view client_id_params,
                              const std::vector<IdField>& added) {
  std::string fields;
  auto append_field = [&fields](std::string_view key, const std::string* value) {
    fields += fields.empty() ? "(" : " ";
    fields += imap_string(key);
    fields += ' ';
    fields += value ? imap_string(*value) : "NIL";
  };
  // The parameters as the client sent them, read again: "(" *(string SP nstring) ")".
  const std::string bytes = std::string(client_id_params) + "\r\n";
  const CommandTokens parsed = tokenize_command(bytes, 2);
  const auto& tokens = parsed.tokens;
  const bool list = !parsed.malformed && tokens.size() >= 2 && tokens.size() % 2 == 0 &&
                    tokens.front().kind == imap::TokenKind::ListOpen &&
                    tokens.back().kind == imap::TokenKind::ListClose;
  if (list) {
    for (std::size_t i = 1; i + 1 < tokens.size(); i += 2) {
      const auto key = astring_value(tokens[i]);
      if (!key || tokens[i].kind == imap::TokenKind::Atom) continue;
      if (forwarding_id_field(*key)) continue;
      const auto value = tokens[i + 1].is_nil() ? std::nullopt : astring_value(tokens[i + 1]);
      append_field(*key, value ? &*value : nullptr);
    }
  }
  for (const auto& [key, value] : added) append_field(key, &value);
  std::string line(tag);
  line += " ID ";
  line += fields.empty() ? "NIL" : fields + ")";
  line += "\r\n";
  return line;
}

std::string refusal_line(std::string_view tag, std::string_view text) {
  return tagged_line(tag, "NO " + cleaned_text(text, "Login failed."));
}

std::string unavailable_line(std::string_view tag, std::string_view text) {
  return tagged_line(tag, "NO [UNAVAILABLE] " + cleaned_text(text, "Service temporarily unavailable."));
}

}  // namespace imapscope::route
