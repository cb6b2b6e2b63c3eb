// COMPRESS DEFLATE towards the server: the proxy's own command, sent when the server
// offers it, the client is logged in and nothing is in flight (so that no answer is
// cut in two by the switch). The client never sees this exchange; its commands wait
// meanwhile. The client leg's compression is independent (answer_compress).
#include "proxy/session/session.hpp"

#include "proxy/imap/abnf.hpp"

namespace imapscope::session {
namespace {

constexpr std::string_view kOwnTag = "imapscope-z";

}  // namespace

void Session::note_server_capabilities(std::string_view list) {
  if (!settings_.compress_upstream || server_compress_ != UpstreamCompress::Off) return;
  imap::for_each_word(list, [&](std::string_view cap) {
    if (imap::iequals(cap, "COMPRESS=DEFLATE")) server_compress_ = UpstreamCompress::Offered;
  });
}

void Session::maybe_compress_upstream() {
  if (server_compress_ != UpstreamCompress::Offered) return;
  if (!state_.logged_in()) return;
  // A quiet moment: no command in flight, no client message half-read, nothing held.
  if (!state_.pending().empty() || client_in_message_ || server_in_message_ || commands_paused_ ||
      client_tls_requested_ || state_.client_input() != imap::ClientInput::Commands) {
    return;
  }
  if (!state_.add_pending(kOwnTag, imap::Verb::Compress, false)) return;
  to_server_.append(kOwnTag).append(" COMPRESS DEFLATE\r\n");
  server_compress_ = UpstreamCompress::Sent;
}

bool Session::own_compress_answer(const imap::Response& r) {
  if (server_compress_ != UpstreamCompress::Sent || r.kind != imap::ResponseKind::Tagged || r.tag != kOwnTag) {
    return false;
  }
  // A tagged OK to COMPRESS blocks the decoders until the relay has switched the leg;
  // a refusal is final for this session.
  server_compress_ = r.status == imap::Status::Ok ? UpstreamCompress::Accepted : UpstreamCompress::Refused;
  return true;
}

void Session::server_compress_started() {
  server_compress_ = UpstreamCompress::Active;
  state_.transport_changed();
}

}  // namespace imapscope::session
