// What the session asks before a login goes to the server, and tells once the server
// has answered it: the login penalty (proxy/guard/) sits behind it, bound by the relay
// to the client's address. The session knows neither the address nor where the
// penalty lives; the gate never sees a credential, only keyed digests of them.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace imapscope::session {

class LoginGate {
 public:
  // A LOGIN or AUTHENTICATE is about to go to the server: how long to hold it (and
  // the client's commands after it) first; zero to send it now.
  virtual std::chrono::milliseconds login_delay() = 0;
  // Folds one piece of credentials (user name, password, SASL line) into a keyed
  // one-way digest, starting from 0. Pure; the piece is not kept.
  virtual std::uint64_t fold_credentials(std::uint64_t so_far, std::string_view piece) const = 0;
  // The server answered the login NO (with the digest of what was sent), or OK.
  virtual void login_failed(std::uint64_t credentials) = 0;
  virtual void login_succeeded() = 0;

 protected:
  ~LoginGate() = default;
};

}  // namespace imapscope::session
