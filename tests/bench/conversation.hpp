// A mail client session as two byte streams, for the session benchmarks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace imapscope::bench {

struct Conversation {
  std::string client, server;  // client→server and server→client bytes
  std::uint64_t client_messages = 0, server_messages = 0;
  std::uint64_t tagged = 0;  // tagged OKs, each answering a command of the client
  std::uint64_t idles = 0;   // "+" answers to IDLE
  // Causality: the server bytes up to server_end exist only once the client decoder
  // has consumed client_end bytes (the server answers what it was sent). In order.
  struct Gate {
    std::size_t client_end, server_end;
  };
  std::vector<Gate> gates;
};

// What a desktop client does against Dovecot: log in, select INBOX, then rounds of
// flag resync (UID FETCH ... FLAGS), STORE, NOOP, IDLE until a message arrives and a
// header fetch of that message (a small literal); INBOX reselected now and then.
Conversation build_session(int rounds);

}  // namespace imapscope::bench
