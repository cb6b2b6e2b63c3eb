// What a login carries, decoded for the lookup: the user, the authorization identity
// (PLAIN's) and the secret of the LOGIN command and of the SASL mechanisms the
// pre-login phase takes (AUTHENTICATE, RFC 9051 §6.2.2):
//   PLAIN        RFC 4616   base64 of [authzid] NUL authcid NUL passwd
//   LOGIN        (draft-murchison-sasl-login) base64 user, then base64 password
//   XOAUTH2      Google's   base64 of "user=" U ^A "auth=Bearer " T ^A ^A
//   OAUTHBEARER  RFC 7628   base64 of "n,a=U," ^A key=value ^A ... "auth=Bearer " T ^A ^A
// Every function is total: bad input is an error value, never an exception. The
// results hold credentials: never log them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proxy/imap/token.hpp"

namespace imapscope::route {

enum class Mechanism : std::uint8_t { Plain, Login, XOAuth2, OAuthBearer };

// Case-insensitive; nullopt for any other mechanism.
std::optional<Mechanism> mechanism_from_name(std::string_view name);
// "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER".
std::string_view mechanism_name(Mechanism mechanism);
// nginx's Auth-Method: "plain", "login", "xoauth2", "oauthbearer" (the LOGIN command
// is "plain" too, as in nginx).
std::string_view auth_method(Mechanism mechanism);
// Client responses the exchange takes: LOGIN 2 (user, then password), the others 1.
unsigned responses_needed(Mechanism mechanism);

struct Credentials {
  std::string method;   // nginx's Auth-Method
  std::string user;     // the login name (OAUTHBEARER's a= may be absent: then empty)
  std::string authzid;  // PLAIN's authorization identity, when given
  std::string secret;   // password or bearer token
};

enum class CredentialsError : std::uint8_t {
  None,
  NotBase64,  // a SASL response isn't canonical base64
  Malformed,  // decoded, but not what the mechanism's grammar says (or an astring that
              // isn't one, a user name with NUL, CR or LF, an empty user)
};
std::string_view credentials_error_name(CredentialsError error);

struct DecodedCredentials {
  Credentials credentials;  // meaningful only when ok()
  CredentialsError error = CredentialsError::None;
  bool ok() const { return error == CredentialsError::None; }
};

// astring = 1*ASTRING-CHAR / string   (RFC 9051 §9): an atom of ASTRING-CHARs, a quoted
// string whose only escapes are \\ and \" (no NUL, CR, LF), or a literal whose payload
// was kept (no NUL; literal8 isn't an astring). nullopt when the token is none of these.
std::optional<std::string> astring_value(const imap::Token& token);

// LOGIN SP userid SP password: method "plain".
DecodedCredentials login_command_credentials(const imap::Token& user, const imap::Token& password);

// An AUTHENTICATE exchange: responses as the client sent them, each base64 ("" is an
// empty response; the server turns SASL-IR's "=" into ""), as many as
// responses_needed(mechanism).
DecodedCredentials sasl_credentials(Mechanism mechanism, std::span<const std::string> responses);

// The mechanisms' messages once base64-decoded.
DecodedCredentials plain_credentials(std::string_view message);
DecodedCredentials login_mechanism_credentials(std::string_view user, std::string_view password);
DecodedCredentials xoauth2_credentials(std::string_view message);
DecodedCredentials oauthbearer_credentials(std::string_view message);

}  // namespace imapscope::route
