// Client bytes into the pre-login server, in reads of varying size, against the same
// bytes fed whole: the answers, the logins (each taken and refused, so that one input
// runs many) and what is left must be alike. Every answer is whole lines, every step
// of a login ends in CRLF, and what the server leaves unconsumed stays bounded.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/route/prelogin_server.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace imapscope;

namespace {

std::string run(const std::string& input, std::uint32_t seed, bool in_pieces) {
  route::PreLoginServer server({"IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN"});
  fuzz::ReadSizes reads(seed);
  std::string transcript, pending;
  std::size_t at = 0;
  for (int round = 0; round < 1'000'000; ++round) {
    if (at < input.size()) {
      const std::size_t n = in_pieces ? reads.next(input.size() - at) : input.size() - at;
      pending.append(input, at, n);
      at += n;
    }
    std::string_view view = pending;
    std::string out;
    server.feed(view, out);
    const bool consumed = view.size() != pending.size();
    pending.erase(0, pending.size() - view.size());
    if (!out.empty() && !out.ends_with("\r\n")) std::abort();
    transcript += out;
    // A partial line waits up to the line limit; a literal up to its own.
    if (in_pieces && pending.size() > route::PreLoginServer::kMaxLine + 2 + 4096) std::abort();
    if (server.login_ready()) {
      const auto login = server.take_login();
      transcript += "[login " + login.tag + " " + login.mechanism + " " + login.user + "\n";
      for (const auto& step : login.steps) {
        if (!step.ends_with("\r\n")) std::abort();
        transcript += step;
      }
      transcript += "]";
      server.resume();
      continue;
    }
    if (server.closed()) {
      pending.append(input, at);  // never read: the same left over whatever the reads
      break;
    }
    if (at == input.size() && !consumed) break;
  }
  return transcript + "[left " + pending + "]";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint32_t seed = static_cast<std::uint32_t>(data[0]) << 8 | data[1];
  const std::string input(reinterpret_cast<const char*>(data + 2), size - 2);
  if (run(input, seed, false) != run(input, seed, true)) std::abort();
  return 0;
}
