// Client bytes into the CommandDecoder, in reads of varying size. Whenever the client
// waits for the server, a server answer is decoded: "+" or a tagged NO/OK, chosen by
// the input, so literal, IDLE, AUTHENTICATE and STARTTLS paths all run.
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
  const std::uint8_t answers = data[2];
  const std::string input(reinterpret_cast<const char*>(data + 3), size - 3);

  imap::SessionState state(limits);
  imap::CommandDecoder commands(state, limits);
  imap::ResponseDecoder responses(state, limits);
  fuzz::ReadSizes reads(static_cast<std::uint32_t>(data[0]) << 8 | data[1]);

  std::string fed, pending, emitted;
  std::size_t at = 0;
  unsigned answer_count = 0;
  auto answer = [&] {
    // The server's side of a wait, so the client stream can go on.
    if (state.transport_change_pending()) {
      state.transport_changed();
      return;
    }
    // A tag that isn't one (a literal after "*") can only be released by "+".
    const bool tag_ok = !state.wait_tag().empty() && state.wait_tag().find_first_of("*+ ") == std::string_view::npos;
    const bool continuation = (((answers >> (answer_count++ % 8)) & 1) != 0 || !tag_ok) &&
                              state.wait_reason() != imap::WaitReason::TaggedResult;
    std::string reply = continuation ? std::string("+ go\r\n") : std::string(state.wait_tag()) + " NO no\r\n";
    std::string_view view = reply;
    for (;;) {
      const auto ev = responses.next(view);
      if (ev.kind == imap::EventKind::NeedMore || ev.kind == imap::EventKind::Blocked) break;
    }
    if (state.transport_change_pending()) state.transport_changed();
  };

  // Bounded: a wait that no answer releases ends the run.
  for (int round = 0; round < 100000 && (at < input.size() || !pending.empty()); ++round) {
    if (at < input.size()) {
      const auto n = reads.next(input.size() - at);
      fed.append(input, at, n);
      pending.append(input, at, n);
      at += n;
    }
    std::string_view view = pending;
    bool blocked = false;
    for (;;) {
      const auto ev = commands.next(view);
      if (ev.kind == imap::EventKind::NeedMore) break;
      if (ev.kind == imap::EventKind::Blocked) {
        blocked = true;
        break;
      }
      emitted.append(ev.raw);
      if (ev.kind == imap::EventKind::Message || ev.kind == imap::EventKind::MessagePart) {
        (void)imap::describe_command(commands.command());  // touches every view
      }
    }
    pending.erase(0, pending.size() - view.size());
    fuzz::check_exact(fed, pending.size(), emitted, limits);
    if (blocked) {
      const auto before = state.client_input();
      answer();
      if (state.client_input() == before && !state.transport_change_pending() &&
          before == imap::ClientInput::AwaitingServer && at == input.size()) {
        break;
      }
    } else if (at == input.size()) {
      break;
    }
  }
  return 0;
}
