#include "proxy/route/sasl.hpp"

#include <utility>
#include <vector>

#include "proxy/imap/abnf.hpp"
#include "proxy/util/base64.hpp"

namespace imapscope::route {

namespace {

constexpr char kKvSep = '\x01';
// Key-value pairs of one XOAUTH2 / OAUTHBEARER message; RFC 7628 names four keys
// (auth, host, port, plus extensions): a few dozen is already absurd.
constexpr std::size_t kMaxPairs = 32;

DecodedCredentials failure(CredentialsError error) {
  DecodedCredentials d;
  d.error = error;
  return d;
}

DecodedCredentials success(Mechanism mechanism, std::string user, std::string authzid, std::string secret) {
  DecodedCredentials d;
  d.credentials.method = std::string(auth_method(mechanism));
  d.credentials.user = std::move(user);
  d.credentials.authzid = std::move(authzid);
  d.credentials.secret = std::move(secret);
  return d;
}

// A user name goes into a lookup (an HTTP header, a map key) and a log line: NUL, CR
// and LF can't be in one whatever the mechanism allowed.
bool usable_name(std::string_view name) { return name.find_first_of(std::string_view("\0\r\n", 3)) == std::string_view::npos; }

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

using KvPairs = std::vector<std::pair<std::string_view, std::string_view>>;

// kvpair = key "=" value kvsep; key = 1*(ALPHA);
// value = *(VCHAR / SP / HTAB / CR / LF)   (RFC 7628 §3.1; 8-bit bytes are let through,
// XOAUTH2 clients put UTF-8 user names there). text is the pairs and the final kvsep.
// Each key at most once: two "user=" would be two users.
std::optional<KvPairs> parse_kvpairs(std::string_view text) {
  KvPairs pairs;
  while (text != std::string_view(&kKvSep, 1)) {
    const auto end = text.find(kKvSep);
    if (end == std::string_view::npos || pairs.size() == kMaxPairs) return std::nullopt;
    const std::string_view pair = text.substr(0, end);
    text.remove_prefix(end + 1);
    const auto eq = pair.find('=');
    if (eq == 0 || eq == std::string_view::npos) return std::nullopt;
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    for (const char c : key) {
      if (!is_alpha(c)) return std::nullopt;
    }
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 && c != '\t' && c != '\r' && c != '\n') return std::nullopt;
      if (u == 0x7f) return std::nullopt;
    }
    for (const auto& [k, v] : pairs) {
      if (imap::iequals(k, key)) return std::nullopt;
    }
    pairs.emplace_back(key, value);
  }
  return pairs;
}

std::optional<std::string_view> find_key(const KvPairs& pairs, std::string_view key) {
  for (const auto& [k, v] : pairs) {
    if (imap::iequals(k, key)) return v;
  }
  return std::nullopt;
}

// auth = "Bearer" 1*SP token (RFC 6750 §2.1 credentials, as RFC 7628 §3.1 carries them).
std::optional<std::string_view> bearer_token(std::string_view auth) {
  constexpr std::string_view kScheme = "Bearer";
  if (auth.size() <= kScheme.size() || !imap::iequals(auth.substr(0, kScheme.size()), kScheme) ||
      auth[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  auth.remove_prefix(kScheme.size());
  while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
  if (auth.empty() || auth.find_first_of(" \t\r\n") != std::string_view::npos) return std::nullopt;
  return auth;
}

// saslname = 1*(UTF8-char-safe / "=2C" / "=3D")   (RFC 5801 §4): "," and "=" escaped.
std::optional<std::string> decode_saslname(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ',' || c == '\0') return std::nullopt;
    if (c != '=') {
      out += c;
      continue;
    }
    const std::string_view escape = text.substr(i + 1, 2);
    if (escape == "2C" || escape == "2c") {
      out += ',';
    } else if (escape == "3D" || escape == "3d") {
      out += '=';
    } else {
      return std::nullopt;
    }
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<Mechanism> mechanism_from_name(std::string_view name) {
  for (const Mechanism m : {Mechanism::Plain, Mechanism::Login, Mechanism::XOAuth2, Mechanism::OAuthBearer}) {
    if (imap::iequals(name, mechanism_name(m))) return m;
  }
  return std::nullopt;
}

std::string_view mechanism_name(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::Plain: return "PLAIN";
    case Mechanism::Login: return "LOGIN";
    case Mechanism::XOAuth2: return "XOAUTH2";
    case Mechanism::OAuthBearer: return "OAUTHBEARER";
  }
  return "PLAIN";
}

std::string_view auth_method(Mechanism mechanism) {
  switch (mechanism) {
    case Mechanism::Plain: return "plain";
    case Mechanism::Login: return "login";
    case Mechanism::XOAuth2: return "xoauth2";
    case Mechanism::OAuthBearer: return "oauthbearer";
  }
  return "plain";
}

unsigned responses_needed(Mechanism mechanism) { return mechanism == Mechanism::Login ? 2 : 1; }

std::string_view credentials_error_name(CredentialsError error) {
  switch (error) {
    case CredentialsError::None: return "none";
    case CredentialsError::NotBase64: return "not-base64";
    case CredentialsError::Malformed: return "malformed";
  }
  return "malformed";
}

std::optional<std::string> astring_value(const imap::Token& token) {
  switch (token.kind) {
    case imap::TokenKind::Atom:
      if (token.text.empty()) return std::nullopt;
      for (const char c : token.text) {
        if (!imap::is_astring_char(c)) return std::nullopt;
      }
      return std::string(token.text);
    case imap::TokenKind::Quoted: {
      // quoted = DQUOTE *QUOTED-CHAR DQUOTE
      // QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials / UTF8-2..4
      std::string value;
      value.reserve(token.text.size());
      for (std::size_t i = 0; i < token.text.size(); ++i) {
        char c = token.text[i];
        if (c == '\0' || c == '\r' || c == '\n') return std::nullopt;
        if (c == '\\') {
          if (i + 1 == token.text.size()) return std::nullopt;
          c = token.text[++i];
          if (c != '\\' && c != '"') return std::nullopt;
        }
        value += c;
      }
      return value;
    }
    case imap::TokenKind::Literal:
      // literal = "{" number64 ["+"] "}" CRLF *CHAR8; CHAR8 = %x01-ff
      if (!token.has_content || token.literal.binary) return std::nullopt;
      if (token.text.find('\0') != std::string_view::npos) return std::nullopt;
      return std::string(token.text);
    default:
      return std::nullopt;
  }
}

DecodedCredentials login_command_credentials(const imap::Token& user, const imap::Token& password) {
  auto name = astring_value(user);
  auto secret = astring_value(password);
  if (!name || !secret || name->empty() || !usable_name(*name)) return failure(CredentialsError::Malformed);
  return success(Mechanism::Plain, std::move(*name), "", std::move(*secret));
}

DecodedCredentials sasl_credentials(Mechanism mechanism, std::span<const std::string> responses) {
  if (responses.size() != responses_needed(mechanism)) return failure(CredentialsError::Malformed);
  std::vector<std::string> decoded;
  decoded.reserve(responses.size());
  for (const auto& response : responses) {
    auto bytes = util::base64_decode(response);
    if (!bytes) return failure(CredentialsError::NotBase64);
    decoded.push_back(std::move(*bytes));
  }
  switch (mechanism) {
    case Mechanism::Plain: return plain_credentials(decoded[0]);
    case Mechanism::Login: return login_mechanism_credentials(decoded[0], decoded[1]);
    case Mechanism::XOAuth2: return xoauth2_credentials(decoded[0]);
    case Mechanism::OAuthBearer: return oauthbearer_credentials(decoded[0]);
  }
  return failure(CredentialsError::Malformed);
}

DecodedCredentials plain_credentials(std::string_view message) {
  // message = [authzid] UTF8NUL authcid UTF8NUL passwd   (RFC 4616 §2); authcid = 1*SAFE
  const auto first = message.find('\0');
  if (first == std::string_view::npos) return failure(CredentialsError::Malformed);
  const auto second = message.find('\0', first + 1);
  if (second == std::string_view::npos) return failure(CredentialsError::Malformed);
  const std::string_view authzid = message.substr(0, first);
  const std::string_view authcid = message.substr(first + 1, second - first - 1);
  const std::string_view passwd = message.substr(second + 1);
  if (passwd.find('\0') != std::string_view::npos) return failure(CredentialsError::Malformed);
  if (authcid.empty() || !usable_name(authcid) || !usable_name(authzid)) {
    return failure(CredentialsError::Malformed);
  }
  return success(Mechanism::Plain, std::string(authcid), std::string(authzid), std::string(passwd));
}

DecodedCredentials login_mechanism_credentials(std::string_view user, std::string_view password) {
  if (user.empty() || !usable_name(user)) return failure(CredentialsError::Malformed);
  return success(Mechanism::Login, std::string(user), "", std::string(password));
}

DecodedCredentials xoauth2_credentials(std::string_view message) {
  // "user=" user ^A "auth=Bearer " token ^A ^A
  const auto pairs = parse_kvpairs(message);
  if (!pairs) return failure(CredentialsError::Malformed);
  const auto user = find_key(*pairs, "user");
  const auto auth = find_key(*pairs, "auth");
  if (!user || !auth || user->empty() || !usable_name(*user)) return failure(CredentialsError::Malformed);
  const auto token = bearer_token(*auth);
  if (!token) return failure(CredentialsError::Malformed);
  return success(Mechanism::XOAuth2, std::string(*user), "", std::string(*token));
}

DecodedCredentials oauthbearer_credentials(std::string_view message) {
  // client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep          (RFC 7628 §3.1)
  // gs2-header = gs2-cb-flag "," [ "a=" saslname ] ","               (RFC 5801 §4)
  // gs2-cb-flag = "n" / "y"   ("p=" asks for channel binding, which OAUTHBEARER has not)
  // A lone kvsep answers a server's error challenge: not a login.
  const auto header_end = message.find(kKvSep);
  if (header_end == std::string_view::npos) return failure(CredentialsError::Malformed);
  std::string_view header = message.substr(0, header_end);
  if (header.size() < 3 || (header[0] != 'n' && header[0] != 'y') || header[1] != ',' || header.back() != ',') {
    return failure(CredentialsError::Malformed);
  }
  header = header.substr(2, header.size() - 3);
  std::string user;
  if (!header.empty()) {
    if (!header.starts_with("a=")) return failure(CredentialsError::Malformed);
    auto name = decode_saslname(header.substr(2));
    if (!name || !usable_name(*name)) return failure(CredentialsError::Malformed);
    user = std::move(*name);
  }
  const auto pairs = parse_kvpairs(message.substr(header_end + 1));
  if (!pairs) return failure(CredentialsError::Malformed);
  const auto auth = find_key(*pairs, "auth");
  if (!auth) return failure(CredentialsError::Malformed);
  const auto token = bearer_token(*auth);
  if (!token) return failure(CredentialsError::Malformed);
  return success(Mechanism::OAuthBearer, std::move(user), "", std::string(*token));
}

}  // namespace imapscope::route
