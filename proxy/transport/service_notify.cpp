#include "proxy/transport/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "proxy/util/log.hpp"

namespace imapscope::transport {
namespace {

// The protocol itself is a few lines: libsystemd would be a run-time dependency
// for one sendmsg(), and this works the same under any manager that sets the socket.
bool send_datagram(const std::string& path, std::string_view state) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() < 2 || path.size() >= sizeof(address.sun_path) || (path[0] != '/' && path[0] != '@')) {
    errno = EINVAL;
    return false;
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') address.sun_path[0] = '\0';  // a socket in the abstract namespace
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), length);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return sent == static_cast<ssize_t>(state.size());
}

void notify_or_log(std::string_view state) {
  if (!notify_service(state)) {
    util::log_line(util::LogLevel::Warning, "event=service_notify_failed state=" +
                                                util::log_quote(std::string(state.substr(0, state.find('\n')))) +
                                                " error=" + util::log_quote(std::strerror(errno)));
  }
}

}  // namespace

bool notify_service(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0') return true;
  return send_datagram(path, state);
}

void notify_ready() { notify_or_log("READY=1\nSTATUS=Accepting connections"); }

void notify_reloading() {
  // MONOTONIC_USEC lets a manager that knows Type=notify-reload (systemd 253+) tell
  // this reload's READY=1 from an earlier one; older ones ignore it.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<unsigned long long>(now.tv_sec) * 1'000'000ULL +
                    static_cast<unsigned long long>(now.tv_nsec) / 1'000ULL;
  notify_or_log("RELOADING=1\nSTATUS=Reloading rules and certificates\nMONOTONIC_USEC=" + std::to_string(usec));
}

void notify_stopping() { notify_or_log("STOPPING=1\nSTATUS=Draining sessions"); }

}  // namespace imapscope::transport
