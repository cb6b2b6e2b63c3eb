// Who the proxy runs as. It starts as root (or with CAP_NET_BIND_SERVICE) only to
// bind ports below 1024 and read keys only root may read; once the listeners and
// the admin address are bound and the keys loaded, it becomes an unprivileged
// account for good. Its memory holds passwords: it never dumps core.
#pragma once

#include <sys/types.h>

#include <string>

namespace imapscope::app {

struct Account {
  std::string user, group;  // as given, for messages
  uid_t uid = 0;
  gid_t gid = 0;
};

// Looks up `user` (a name or a number) and `group` (likewise; empty: the user's own
// group). Throws std::runtime_error("no user \"x\" on this system") and the like.
Account find_account(const std::string& user, const std::string& group);

// First thing at start: no core file (RLIMIT_CORE 0, hard limit too) and not
// dumpable (no core, no ptrace or /proc/PID/mem by the same user).
void forbid_core_dumps();

// Before anything is bound or made: throws unless the process can become the
// account (it is root, or it runs as that account already).
void check_can_become(const Account& account);

// Becomes the account: supplementary groups (the account's, so that a member of
// ssl-cert reads group-readable keys on a reload), group, user; then checks that
// root can't be regained. Capabilities left over (CAP_NET_BIND_SERVICE given to a
// start without root) are cleared too. Throws std::runtime_error on any failure:
// a proxy that can't drop must not serve.
void become(const Account& account);

// Root, or CAP_NET_BIND_SERVICE in effect: ports below 1024 can be bound.
bool can_bind_low_ports();

// Without an account to become: clears the capabilities a start without root was
// given (the ports are bound, none is needed any more). Root keeps what it has.
void drop_capabilities();

}  // namespace imapscope::app
