// A Session with the observer a Telemetry gives it, fed bytes by the test (what it
// forwards is thrown away): for tests of observers (metrics, transcripts).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/session/observer.hpp"
#include "proxy/session/session.hpp"

namespace imapscope::testing {

struct ObservedSession {
  ObservedSession(session::Telemetry& telemetry, std::uint64_t id, std::string_view address = "127.0.0.1:4000")
      : observer(telemetry.session_started({"imap", "none", id, address})), session(settings()) {
    session.set_observer(observer.get());
  }
  static session::SessionSettings settings() {
    session::SessionSettings s;
    s.client_leg.tls = true;
    return s;
  }
  void client(std::string_view bytes) {
    session.feed_client(bytes);
    session.to_server().clear();
  }
  void server(std::string_view bytes) {
    session.feed_server(bytes);
    session.to_client().clear();
  }
  // What the relay says when the connection ends.
  void close() {
    if (observer) observer->session_closed(session::CloseReason::ClientClosed, {});
  }
  std::unique_ptr<session::Observer> observer;
  session::Session session;
};

}  // namespace imapscope::testing
