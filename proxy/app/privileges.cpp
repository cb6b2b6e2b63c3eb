#include "proxy/app/privileges.hpp"

#include <dirent.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

namespace imapscope::app {
namespace {

std::string errno_text() { return std::strerror(errno); }

bool all_digits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos && text.size() < 10;
}

void not_dumpable() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    throw std::runtime_error("can't make the process non-dumpable (" + errno_text() + ")");
  }
}

bool has_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return true;  // can't tell: assume the worst
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return true;
  }
  return ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 1;
}

// The calling thread's only (capabilities are per thread). Async-signal-safe.
bool clear_own_capabilities() {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);  // fails harmlessly on old kernels
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  return ::syscall(SYS_capset, &header, data) == 0;
}

std::atomic<int> threads_to_clear{0};
std::atomic<int> threads_failed{0};

void clear_on_signal(int) {
  if (!clear_own_capabilities()) threads_failed.fetch_add(1);
  threads_to_clear.fetch_sub(1);
}

// Threads started before the ports were bound (the admin server's, the transcript
// writer's) got the capabilities too: each is asked, by a signal, to clear its own,
// as glibc does for setuid.
void clear_capabilities() {
  if (!clear_own_capabilities()) throw std::runtime_error("can't give up its capabilities (" + errno_text() + ")");
  const int signal_number = SIGRTMIN + 4;
  struct sigaction action {};
  action.sa_handler = clear_on_signal;
  action.sa_flags = SA_RESTART;
  ::sigemptyset(&action.sa_mask);
  struct sigaction before {};
  ::sigaction(signal_number, &action, &before);
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) throw std::runtime_error("can't list its threads to give up their capabilities");
  const auto self = static_cast<pid_t>(::syscall(SYS_gettid));
  while (const dirent* entry = ::readdir(tasks)) {
    const std::string_view name = entry->d_name;
    if (name.empty() || name[0] == '.') continue;
    const auto tid = static_cast<pid_t>(std::stol(std::string(name)));
    if (tid == self) continue;
    threads_to_clear.fetch_add(1);
    if (::syscall(SYS_tgkill, ::getpid(), tid, signal_number) != 0) threads_to_clear.fetch_sub(1);  // it has ended
  }
  ::closedir(tasks);
  for (int i = 0; i < 5000 && threads_to_clear.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ::sigaction(signal_number, &before, nullptr);
  if (threads_to_clear.load() > 0 || threads_failed.load() > 0) {
    throw std::runtime_error("a thread did not give up its capabilities");
  }
}

// The group's name for messages; its number when it has none.
std::string group_name(gid_t gid) {
  std::vector<char> buffer(65536);
  struct group gr {};
  struct group* found = nullptr;
  ::getgrgid_r(gid, &gr, buffer.data(), buffer.size(), &found);
  return found ? std::string(found->gr_name) : std::to_string(gid);
}

}  // namespace

Account find_account(const std::string& user, const std::string& group) {
  if (user.empty()) throw std::runtime_error("no user given");
  Account account{user, group};
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found_user = nullptr;
  ::getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found_user);
  if (found_user == nullptr && all_digits(user)) {
    ::getpwuid_r(static_cast<uid_t>(std::stoul(user)), &pw, buffer.data(), buffer.size(), &found_user);
  }
  if (found_user == nullptr) throw std::runtime_error("no user \"" + user + "\" on this system");
  if (pw.pw_uid == 0) throw std::runtime_error("user \"" + user + "\" is root: name an unprivileged user");
  account.uid = pw.pw_uid;
  account.gid = pw.pw_gid;
  account.user = pw.pw_name;
  if (!group.empty()) {
    std::vector<char> group_buffer(65536);
    struct group gr {};
    struct group* found = nullptr;
    ::getgrnam_r(group.c_str(), &gr, group_buffer.data(), group_buffer.size(), &found);
    if (found == nullptr && all_digits(group)) {
      ::getgrgid_r(static_cast<gid_t>(std::stoul(group)), &gr, group_buffer.data(), group_buffer.size(), &found);
    }
    if (found == nullptr) throw std::runtime_error("no group \"" + group + "\" on this system");
    if (found->gr_gid == 0) throw std::runtime_error("group \"" + group + "\" is root's: name an unprivileged group");
    account.gid = found->gr_gid;
  }
  account.group = group_name(account.gid);
  return account;
}

void forbid_core_dumps() {
  const rlimit none{0, 0};
  if (::setrlimit(RLIMIT_CORE, &none) != 0) throw std::runtime_error("can't forbid core dumps (" + errno_text() + ")");
  not_dumpable();
}

void check_can_become(const Account& account) {
  if (::geteuid() == 0) return;
  if (::geteuid() == account.uid && ::getegid() == account.gid) return;
  throw std::runtime_error("can't become user " + account.user + " and group " + account.group +
                           ": imapscope runs as user " + std::to_string(::geteuid()) +
                           ", not root (start it as root, or as that user without user/group)");
}

void become(const Account& account) {
  if (::geteuid() != 0) {  // started as the account (checked at start): only capabilities to shed
    drop_capabilities();
    return;
  }
  // The account's own supplementary groups (ssl-cert, say), nothing of root's.
  if (::initgroups(account.user.c_str(), account.gid) != 0) {
    const gid_t only = account.gid;
    if (::setgroups(1, &only) != 0) throw std::runtime_error("can't set the supplementary groups (" + errno_text() + ")");
  }
  if (::setresgid(account.gid, account.gid, account.gid) != 0) {
    throw std::runtime_error("can't become group " + account.group + " (" + errno_text() + ")");
  }
  if (::setresuid(account.uid, account.uid, account.uid) != 0) {
    throw std::runtime_error("can't become user " + account.user + " (" + errno_text() + ")");
  }
  // A process that can still get root back has dropped nothing.
  if (::setuid(0) == 0 || ::seteuid(0) == 0 || ::setgid(0) == 0 || ::getuid() != account.uid ||
      ::geteuid() != account.uid || ::getgid() != account.gid) {
    throw std::runtime_error("dropped to user " + account.user + " but could become root again: refusing to run");
  }
  if (has_capabilities()) clear_capabilities();
  // A change of user resets "dumpable" to the system's suid_dumpable: set it again.
  not_dumpable();
  // No exec could ever give back what was dropped (imapscope runs no programs).
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

bool can_bind_low_ports() {
  if (::geteuid() == 0) return true;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_NET_BIND_SERVICE / 32].effective & (1u << (CAP_NET_BIND_SERVICE % 32))) != 0;
}

void drop_capabilities() {
  if (::geteuid() == 0 || !has_capabilities()) return;
  clear_capabilities();
  not_dumpable();
}

}  // namespace imapscope::app
