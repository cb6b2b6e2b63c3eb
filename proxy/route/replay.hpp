// What goes to the backend once a lookup has routed a login, and what the client gets
// when no backend answers it. Pure functions over the login the pre-login phase took.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/route/backend.hpp"
#include "proxy/route/prelogin_server.hpp"

namespace imapscope::route {

// Dovecot's master user (routing.master_user / master_password_file).
struct MasterUser {
  std::string user;
  std::string password;
};

// The login for the backend, as steps (see LoginAttempt::steps: the first is sent at
// once, each later one after the backend's next "+"):
// - a master login (route.master): one AUTHENTICATE PLAIN with SASL-IR, authzid =
//   route.login_user or the client's user, authcid and password = master's; empty
//   when route.master but no master user is configured (the relay can't log in);
// - credentials overridden (route.login_user or login_password): one LOGIN with the
//   client's tag, user = login_user or the client's, password = login_password or the
//   client's secret (as nginx's "LOGIN user pass" with Auth-User / Auth-Pass);
// - otherwise the client's own steps, unchanged.
// The override and master logins need LITERAL+ at the backend only for values with CR,
// LF, NUL or 8-bit bytes (see imap_string()).
std::vector<std::string> replay_steps(const LoginAttempt& login, const Route& route, const MasterUser* master);

// An ID field the proxy adds (forward_client "imap-id": x-originating-ip ...).
using IdField = std::pair<std::string, std::string>;

// "tag ID (...)\r\n": the client's ID parameters (PreLoginServer::client_id(): "(...)"
// as sent, literals included, or "NIL") without Dovecot's forwarding fields
// (x-originating-*, x-connected-*, x-proxy-ttl, x-session-id, x-session-ext-id,
// x-forward-*, x-client-transport; any case), which a client must not be able to set
// through a trusted proxy, then `added`. NIL when nothing is left. Parameters that
// can't be read count as NIL.
std::string replay_id_command(std::string_view tag, std::string_view client_id_params,
                              const std::vector<IdField>& added = {});
// Whether an ID field name is one of the forwarding fields above.
bool forwarding_id_field(std::string_view name);

// The lines (with CRLF) the client gets when no backend answers its login:
// "tag NO text" (a refusal: auth_http's Auth-Status text, the map's "-" text) and
// "tag NO [UNAVAILABLE] text" (lookup or backend down). The text is cleaned of CR, LF
// and control characters and cut to kMaxRefusalText bytes (at a UTF-8 boundary);
// empty, it becomes a default.
inline constexpr std::size_t kMaxRefusalText = 200;
std::string refusal_line(std::string_view tag, std::string_view text);
std::string unavailable_line(std::string_view tag, std::string_view text);

// An IMAP string for value: a quoted string ("..." with \\ and \" escaped) when it
// can be one, else a non-synchronising literal "{n+}\r\n" followed by the bytes (CR,
// LF, NUL or 8-bit bytes).
std::string imap_string(std::string_view value);

}  // namespace imapscope::route
