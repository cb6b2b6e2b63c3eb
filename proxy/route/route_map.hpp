// The map file: which backend each user goes to, written by an administrator.
//
//   # pattern            backend              options
//   alice@example.com    127.0.0.1:1143
//   bob                  127.0.0.1:2143       starttls
//   @example.org         10.0.0.5:993         tls
//   *@*.example.net      10.0.0.6:143
//   carol                127.0.0.1:2143       user=carol.archive
//   dave                 -  "Mailbox moved, use imap.example.com"
//   *                    127.0.0.1:1143       # the default
//
// One entry per line, fields split by blanks (spaces, tabs); a field starting with
// `#` starts a comment; blank lines are skipped. Patterns (ASCII case-insensitive): a
// user name, `@domain` (every user of that domain, subdomains not included), a glob
// with `*` (any run of characters, the empty one too), and `*` alone, the default.
// A user is looked up by exact name, then by domain, then against the globs in file
// order, then the default. The backend is `host:port`, `[v6]:port` or `host` (port
// 143, 993 with `tls`); `-` refuses the login with the quoted text after it (a
// default text without one). Options: `tls`, `starttls`, `plain` (the backend's
// connection; without one, the default_tls given to parse), `user=NAME` (log in there
// as NAME; the client's own password goes with it). `master` is refused: a map
// can't check the client's password, and a master login would let any password in.
//
// Lookups by name and domain are hash lookups, so maps of a million users load and
// answer quickly; globs are tried one after another (keep them few).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/route/backend.hpp"

namespace imapscope::route {

class RouteMap {
 public:
  // The text of a map file; `file` names it in errors. Throws util::InputError
  // "FILE:LINE:COLUMN: reason" for the first thing wrong (a duplicate pattern, a bad
  // port, an unknown option, ...).
  static RouteMap parse(std::string_view text, const std::string& file, BackendTls default_tls);

  // Routed (the entry's backend and options), Refused (a `-` entry's text), or
  // Refused "[AUTHENTICATIONFAILED] ..." when no pattern matches and there is no
  // default. Thread-safe (const).
  LookupResult lookup(std::string_view user) const;
  // The entry that matches, if any (a map that shares users with an auth_http service
  // leaves those it has no entry for to it).
  std::optional<LookupResult> find(std::string_view user) const;

  // Every backend the map names, each once (by name(), the first entry's TLS), in file
  // order: the health checks start with these.
  std::vector<Backend> backends() const;

  std::size_t entries() const { return entry_count_; }

 private:
  struct Target {
    bool refused = false;
    std::uint32_t index = 0;  // into backends_ or refusals_
    std::optional<std::string> login_user;
    std::uint32_t line = 0;  // where it was written (for "duplicate pattern")
  };
  struct Glob {
    std::string pattern;  // lower case
    Target target;
  };
  LookupResult answer(const Target& target) const;

  std::vector<Backend> backends_;   // distinct (host, port, tls), in file order
  std::vector<std::string> refusals_;
  std::unordered_map<std::string, Target> users_;    // lower-case user -> target
  std::unordered_map<std::string, Target> domains_;  // lower-case domain -> target
  std::vector<Glob> globs_;
  std::optional<Target> default_;
  std::size_t entry_count_ = 0;
};

// `*` matches any run of characters (none too); everything else itself. Both sides
// as given (callers lower-case them).
bool glob_matches(std::string_view pattern, std::string_view text);

}  // namespace imapscope::route
