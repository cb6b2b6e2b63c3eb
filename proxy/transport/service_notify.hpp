// Tells the service manager what the proxy is doing (systemd's sd_notify protocol:
// one datagram of NAME=VALUE lines to the unix socket in $NOTIFY_SOCKET). Type=notify
// units wait for READY=1 before they count the service as started, and "systemctl
// reload" waits for the READY=1 that follows RELOADING=1. Without $NOTIFY_SOCKET
// (started by hand, by a test, by another supervisor) it does nothing.
#pragma once

#include <string_view>

namespace imapscope::transport {

// The listeners accept (start-up), or a reload is over.
void notify_ready();
// A reload (SIGHUP) starts; READY=1 follows when it is over, whatever its outcome.
void notify_reloading();
// The drain starts: no new sessions from here on.
void notify_stopping();

// One state message, as is; false if it could not be sent (no socket: true, nothing to do).
bool notify_service(std::string_view state);

}  // namespace imapscope::transport
