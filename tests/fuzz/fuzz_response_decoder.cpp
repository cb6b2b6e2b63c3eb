// Server bytes into the ResponseDecoder, in reads of varying size, after a few client
// commands so that tagged responses can match, continuations resolve waits, and
// STARTTLS/COMPRESS results change the transport.
#include <cstdint>
#include <string>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/describe.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace imapscope;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const auto limits = fuzz::limits_from(data[0], data[1]);
  const std::string input(reinterpret_cast<const char*>(data + 3), size - 3);

  imap::SessionState state(limits);
  imap::CommandDecoder commands(state, limits);
  imap::ResponseDecoder responses(state, limits);
  static const char* const kOpenings[] = {
      "a1 FETCH 1:* (BODY[] FLAGS)\r\na2 SELECT INBOX\r\n",
      "a1 APPEND INBOX {10}\r\n",
      "a1 IDLE\r\n",
      "a1 AUTHENTICATE PLAIN\r\n",
      "a1 STARTTLS\r\n",
      "a1 COMPRESS DEFLATE\r\n",
  };
  std::string_view opening = kOpenings[data[2] % 6];
  for (;;) {
    const auto ev = commands.next(opening);
    if (ev.kind == imap::EventKind::NeedMore || ev.kind == imap::EventKind::Blocked) break;
  }

  fuzz::ReadSizes reads(static_cast<std::uint32_t>(data[1]) << 8 | data[2]);
  std::string fed, pending, emitted;
  std::size_t at = 0;
  while (at < input.size()) {
    const auto n = reads.next(input.size() - at);
    fed.append(input, at, n);
    pending.append(input, at, n);
    at += n;
    std::string_view view = pending;
    for (;;) {
      const auto ev = responses.next(view);
      if (ev.kind == imap::EventKind::NeedMore) break;
      if (ev.kind == imap::EventKind::Blocked) {
        state.transport_changed();  // as if the relay had switched to TLS / deflate
        continue;
      }
      emitted.append(ev.raw);
      if (ev.kind == imap::EventKind::Message || ev.kind == imap::EventKind::MessagePart) {
        (void)imap::describe_response(responses.response());
      }
    }
    pending.erase(0, pending.size() - view.size());
    fuzz::check_exact(fed, pending.size(), emitted, limits);
  }
  return 0;
}
