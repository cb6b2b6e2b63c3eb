// COMPRESS that involves the server.
// - The proxy's own COMPRESS DEFLATE towards it, sent when the server offers it, the
//   client is logged in and nothing is in flight (so that no answer is cut in two by
//   the switch). The client never sees this exchange; its commands wait meanwhile.
// - The client's COMPRESS passed through, so that one stream runs end to end.
// The client leg's own compression is answer_compress (session.cpp).
#include "proxy/session/session.hpp"

#include "proxy/imap/abnf.hpp"

namespace imapscope::session {
namespace {

constexpr std::string_view kOwnTag = "imapscope-z";

}  // namespace

void Session::note_server_capabilities(std::string_view list) {
  bool deflate = false;
  imap::for_each_word(list, [&](std::string_view cap) { deflate = deflate || imap::iequals(cap, "COMPRESS=DEFLATE"); });
  server_offers_compress_ = deflate;
  if (deflate && settings_.compress_upstream && server_compress_ == UpstreamCompress::Off) {
    server_compress_ = UpstreamCompress::Offered;
  }
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

// The client's COMPRESS goes to the server unchanged when the session would stay
// byte-for-byte transparent anyway: the server offers COMPRESS=DEFLATE, no rule can
// act on this client (rules need plaintext to edit) and the switch cuts into nothing.
// Otherwise the proxy answers it itself (answer_compress).
bool Session::pass_compress_through(const imap::Command& c) {
  const ClientLegView& leg = settings_.client_leg;
  if (!leg.compress_pass_through || !server_offers_compress_ || leg.compressed || client_compress_requested_ ||
      pass_through_ != PassThrough::Off) {
    return false;
  }
  if (c.args.size() != 1 || !imap::iequals(c.args.front().text, "DEFLATE") || !state_.logged_in()) return false;
  if (state_.pending().size() > 1 || server_in_message_ || responses_paused_ || commands_paused_ ||
      !deferred_client_.empty() || renamed_pending()) {
    return false;
  }
  if (server_compress_ != UpstreamCompress::Off && server_compress_ != UpstreamCompress::Refused) return false;
  if (rules_) {
    rules_->refresh(identifier_.info(), identifier_.revision());
    if (rules_->active(policy::Direction::Client) || rules_->active(policy::Direction::Server)) return false;
  }
  pass_through_ = PassThrough::Requested;
  pass_through_tag_.assign(c.tag);
  return true;
}

void Session::note_pass_through_answer(const imap::Response& r) {
  if (pass_through_ != PassThrough::Requested || r.kind != imap::ResponseKind::Tagged || r.tag != pass_through_tag_) {
    return;
  }
  // The OK was forwarded; the decoders wait for pass_through_started().
  pass_through_ = r.status == imap::Status::Ok ? PassThrough::Accepted : PassThrough::Refused;
  pass_through_tag_.clear();
  pass_through_tag_.shrink_to_fit();
}

void Session::pass_through_started() {
  pass_through_ = PassThrough::Active;
  settings_.client_leg.compressed = true;
  state_.transport_changed();
}

}  // namespace imapscope::session
