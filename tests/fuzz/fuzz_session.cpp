// A whole Session (both decoders, identification, capability rewriting and every
// rule action) on arbitrary client and server bytes, in reads of varying size. The
// rules: tests/fuzz/rules.json (every action, for every client and for one family). What it checks: no crash, no sanitizer finding, no hang, and
// the session never queues more than it was given plus bounded additions.
#include <cstdint>
#include <memory>
#include <string>

#include "proxy/identify/signatures.hpp"
#include "proxy/policy/rule_set.hpp"
#include "proxy/session/session.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace imapscope;

namespace {

const policy::RuleStore& rules() {
  static const auto store = [] {
    auto s = std::make_unique<policy::RuleStore>(IMAPSCOPE_SOURCE_DIR "/tests/fuzz/rules.json", identify::builtin_signatures().families);
    s->load_or_throw();
    return s;
  }();
  return *store;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const auto limits = fuzz::limits_from(data[0], data[1]);
  // The input is client bytes and server bytes, cut where the third byte says.
  const std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
  const std::size_t cut = rest.empty() ? 0 : (static_cast<std::size_t>(data[2]) * rest.size()) / 255;
  std::string_view client = rest.substr(0, cut), server = rest.substr(cut);

  session::SessionSettings settings;
  settings.client_limits = &limits;
  settings.server_limits = &limits;
  settings.client_leg.starttls_available = (data[2] & 1) != 0;
  settings.client_leg.compress_offered = (data[2] & 2) != 0;
  settings.compress_upstream = (data[2] & 4) != 0;
  settings.client_leg.compress_pass_through = (data[2] & 8) != 0;
  // LOGIN/AUTHENTICATE answered by the proxy until TLS (the default where STARTTLS is offered).
  settings.client_leg.login_disabled_until_tls = (data[2] & 16) != 0;
  settings.rules = &rules();
  session::Session s(settings);
  fuzz::ReadSizes reads(static_cast<std::uint32_t>(data[0]) << 8 | data[1]);

  std::string client_held, server_held;
  std::size_t out_bytes = 0;
  for (int round = 0; round < 100000 && (!client.empty() || !server.empty() || !client_held.empty() ||
                                          !server_held.empty()); ++round) {
    bool moved = false;
    // Server first: it may release the client.
    if (server_held.empty() && !server.empty()) {
      const auto n = reads.next(server.size());
      server_held.assign(server.substr(0, n));
      server.remove_prefix(n);
    }
    std::string_view in = server_held;
    s.feed_server(in);
    moved = moved || in.size() != server_held.size();
    server_held.assign(in);
    if (client_held.empty() && !client.empty()) {
      const auto n = reads.next(client.size());
      client_held.assign(client.substr(0, n));
      client.remove_prefix(n);
    }
    in = client_held;
    s.feed_client(in);
    moved = moved || in.size() != client_held.size();
    client_held.assign(in);
    if (s.client_tls_requested()) {
      client_held.clear();  // as the relay does: no plaintext after STARTTLS
      s.client_tls_started();
      moved = true;
    }
    // COMPRESS on either leg or passed through: the relay inflates what follows; here
    // it stays as it is.
    if (s.client_compress_requested()) {
      if (s.client_compress_offset() > s.to_client().size()) __builtin_trap();
      s.client_compress_started();
      moved = true;
    }
    if (s.server_compress_requested()) {
      s.server_compress_started();
      moved = true;
    }
    if (s.pass_through_accepted()) {
      s.pass_through_started();  // the session observes from here on
      moved = true;
    }
    while (auto delay = s.take_delay_request()) {
      s.resume(delay->direction);
      moved = true;
    }
    out_bytes += s.to_client().size() + s.to_server().size();
    s.to_client().clear();
    s.to_server().clear();
    if (s.close_requested()) break;
    if (!moved && client.empty() && server.empty()) break;  // both sides wait for bytes that won't come
    if (!moved && !client_held.empty() && server.empty() && server_held.empty()) break;
    s.release_memory();
  }
  // Rules add bounded text per message (answers, injected lines, appended words).
  if (out_bytes > 64 * (size + 1024)) __builtin_trap();
  return 0;
}
