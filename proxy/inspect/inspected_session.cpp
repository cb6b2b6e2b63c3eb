#include "proxy/inspect/inspected_session.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"
#include "proxy/inspect/json_line.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::inspect {
namespace {

std::string_view kind_name(imap::ResponseKind kind) {
  switch (kind) {
    case imap::ResponseKind::Continuation: return "continuation";
    case imap::ResponseKind::Status: return "untagged_status";
    case imap::ResponseKind::Tagged: return "tagged";
    case imap::ResponseKind::Data: break;
  }
  return "data";
}

std::string literals_json(const std::vector<LiteralDigest>& literals) {
  std::string out = "[";
  for (const auto& l : literals) {
    if (out.size() > 1) out += ',';
    out += "{\"size\":" + std::to_string(l.size);
    if (!l.sha256.empty()) out += ",\"sha256\":\"" + l.sha256 + '"';
    if (!l.head.empty()) {
      // Payloads are bytes, not text: base64, and how much of it this is.
      out += ",\"data\":\"" + base64_encode(l.head) + '"';
      if (l.head.size() < l.size) out += ",\"truncated\":true";
    }
    out += '}';
  }
  return out + ']';
}

}  // namespace

InspectedSession::InspectedSession(Inspector& owner, const session::SessionStart& start, bool admitted)
    : owner_(owner),
      writer_(owner.writer()),
      id_(start.id),
      address_(util::address_of(start.client_address)) {
  if (auto* live = owner.live()) live_ = live->open(start);
  const auto& s = owner_.options().selection;
  if (!writer_ || !admitted) {
    decision_ = Decision::Drop;
  } else {
    decision_ = s.wants_user() || s.wants_client() ? Decision::Pending : Decision::Keep;
  }
  emit(JsonLine()
           .str("event", "start")
           .str("listener", start.listener)
           .str("tls", start.tls)
           .str("client_address", start.client_address));
}

InspectedSession::~InspectedSession() {
  if (!live_) return;
  if (!live_->closed()) live_->close("unknown");
  owner_.live()->closed(id_);
}

InspectedSession::Exchange& InspectedSession::exchange() {
  if (!exchange_) exchange_ = std::make_unique<Exchange>(owner_.options().body_cap);
  return *exchange_;
}

void InspectedSession::emit(const JsonLine& event) {
  // A dropped session is still looked at when captures change or it learnt who it is.
  const bool to_file = writer_ && (decision_ != Decision::Drop || capture_ || learnt_ ||
                                   owner_.captures().generation() != captures_seen_);
  if (!live_ && !to_file) return;  // nobody reads it: not even formatted
  const auto now = now_us();
  std::string line = event.finish(now, id_);
  if (to_file) to_transcript(live_ ? line : std::move(line), now);
  if (live_) live_->add_event(std::move(line));
}

void InspectedSession::to_transcript(std::string line, std::int64_t now) {
  follow_captures(now);
  if (decision_ == Decision::Keep || capture_) {
    writer_->write(std::move(line));
    return;
  }
  if (decision_ == Decision::Drop) return;
  pending_.push_back(std::move(line));
  if (pending_.size() > owner_.options().max_pending_events) {
    decision_ = Decision::Drop;  // never learnt who it is in time
    pending_.clear();
  }
}

// Looks at the captures only when they changed, when the one writing this session
// may have ended, or when the session learnt its user or client.
void InspectedSession::follow_captures(std::int64_t now) {
  auto& captures = owner_.captures();
  const auto generation = captures.generation();
  if (capture_) {
    if (generation == captures_seen_ && now < capture_until_us_) return;
    captures_seen_ = generation;
    if (captures.active(capture_, now)) return;
    writer_->write(JsonLine().str("event", "capture_end").num("capture", capture_).finish(now, id_));
    capture_ = 0;
    if (live_) live_->update([](LiveFacts& f) { f.capture = 0; });
  } else if (generation == captures_seen_ && !learnt_) {
    return;
  }
  captures_seen_ = generation;
  learnt_ = false;
  if (decision_ == Decision::Keep) return;  // written anyway
  const auto capture = captures.match({address_, user_ ? &*user_ : nullptr, family_ ? &*family_ : nullptr}, now);
  if (!capture) return;
  capture_ = capture->id;
  capture_until_us_ = capture->until_us;
  if (live_) live_->update([&](LiveFacts& f) { f.capture = capture_; });
  // What happened before the capture: the lines held for the selection, or what
  // the live view still has.
  std::vector<std::string> backlog = decision_ == Decision::Pending ? std::move(pending_)
                                     : live_                        ? live_->backlog()
                                                                    : std::vector<std::string>{};
  pending_.clear();
  writer_->write(
      JsonLine().str("event", "capture").num("capture", capture_).num("backlog", backlog.size()).finish(now, id_));
  for (auto& line : backlog) writer_->write(std::move(line));
}

void InspectedSession::decide() {
  if (decision_ != Decision::Pending) return;
  const auto& s = owner_.options().selection;
  if ((s.wants_user() && !user_) || (s.wants_client() && !family_)) return;
  const bool keep = (!s.wants_user() || user_matches_) && (!s.wants_client() || client_matches_);
  decision_ = keep ? Decision::Keep : Decision::Drop;
  if (keep && !capture_) {
    for (auto& line : pending_) writer_->write(std::move(line));
  }
  pending_.clear();
  pending_.shrink_to_fit();
}

void InspectedSession::learn_user(const imap::Command& c) {
  std::optional<std::string> user;
  if (c.kind == imap::CommandKind::Tagged && c.verb == imap::Verb::Login && !c.args.empty()) {
    user = c.args.front().string_value();
  } else if (c.kind == imap::CommandKind::Tagged && c.verb == imap::Verb::Authenticate && !c.args.empty()) {
    auto& x = exchange();
    x.sasl_mechanism = std::string(c.args.front().text);
    x.sasl_answers = 0;
    if (c.args.size() > 1) user = sasl_user(x.sasl_mechanism, c.args[1].text, true);
    if (user) x.sasl_answers = 1;
  } else if (c.kind == imap::CommandKind::SaslResponse && exchange_ && !exchange_->sasl_mechanism.empty()) {
    auto& x = *exchange_;
    user = sasl_user(x.sasl_mechanism, c.line, x.sasl_answers == 0);
    ++x.sasl_answers;
  }
  if (!user || user_) return;
  user_ = std::move(user);
  learnt_ = true;
  user_matches_ = owner_.options().selection.user_matches(*user_);
  auto label = user_label(*user_, owner_.options().user_names, owner_.options().label_key);
  if (live_) live_->update([&](LiveFacts& f) { f.user = label; });
  emit(JsonLine().str("event", "user").str("user", label));
  decide();
}

void InspectedSession::client_bytes(const imap::Command& c, imap::EventKind kind, std::string_view raw) {
  if (live_) live_->update([&](LiveFacts& f) { f.bytes_from_client += raw.size(); });
  idling_ = false;
  auto& x = exchange();
  if (!x.client_in_message) {
    x.client_in_message = true;
    // Inside AUTHENTICATE every client line is a credential, whatever the decoder
    // made of it (a line over the limit is not even parsed).
    x.client_sensitive = carries_credentials(c) || !x.sasl_mechanism.empty();
  }
  if (!x.client_sensitive) x.client_text.add(raw, transcript_possible());
  if (kind != imap::EventKind::Message) return;
  x.client_in_message = false;
  JsonLine event;
  event.str("dir", "C");
  if (x.client_sensitive) {
    learn_user(c);
    event.str("kind", c.kind == imap::CommandKind::SaslResponse ? "sasl" : "command");
    const bool renderable = c.kind == imap::CommandKind::SaslResponse || (!c.rejected && !c.tag.empty());
    event.str("text", renderable ? redacted_text(c, owner_.options().user_names, owner_.options().label_key) : std::string("*** (credentials)"));
    if (!c.tag.empty() && c.kind == imap::CommandKind::Tagged) event.str("tag", c.tag);
    if (c.kind == imap::CommandKind::Tagged) event.str("command", imap::ascii_upper(c.name));
  } else {
    event.str("kind", c.kind == imap::CommandKind::IdleDone ? "done" : "command");
    if (c.kind == imap::CommandKind::Tagged && !c.tag.empty()) {
      event.str("tag", c.tag);
      event.str("command", c.uid ? "UID " + imap::ascii_upper(c.name) : imap::ascii_upper(c.name));
    }
    event.str("text", x.client_text.take_text());
    const auto literals = x.client_text.take_literals();
    if (!literals.empty()) event.raw("literals", literals_json(literals));
  }
  if (c.rejected) event.flag("rejected", true);
  emit(event);
}

void InspectedSession::server_bytes(const imap::Response& r, imap::EventKind kind, std::string_view raw) {
  if (live_) live_->update([&](LiveFacts& f) { f.bytes_from_server += raw.size(); });
  auto& x = exchange();
  x.server_text.add(raw, transcript_possible());
  if (kind != imap::EventKind::Message) return;
  JsonLine event;
  event.str("dir", "S").str("kind", kind_name(r.kind)).str("text", x.server_text.take_text());
  if (r.kind == imap::ResponseKind::Tagged) event.str("tag", r.tag);
  if (r.status != imap::Status::None) event.str("status", imap::status_name(r.status));
  if (r.kind == imap::ResponseKind::Data && !r.name_text.empty()) event.str("name", imap::ascii_upper(r.name_text));
  const auto literals = x.server_text.take_literals();
  if (!literals.empty()) event.raw("literals", literals_json(literals));
  emit(event);
  // The end of AUTHENTICATE / LOGIN: a user still unknown will stay unknown.
  if (r.kind == imap::ResponseKind::Tagged && r.matched &&
      (r.command_verb == imap::Verb::Authenticate || r.command_verb == imap::Verb::Login)) {
    x.sasl_mechanism.clear();
    if (owner_.options().selection.wants_user() && !user_ && r.status == imap::Status::Ok) {
      user_ = std::string();  // logged in as someone whose name the exchange didn't tell
      user_matches_ = false;
      decide();
    }
  }
  if (idling_ && x.quiet()) {  // a notification or keepalive during IDLE: back to sleep
    exchange_.reset();
    if (live_) live_->pack_events();
  }
}

void InspectedSession::proxy_to_client(std::string_view bytes) {
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) bytes.remove_suffix(1);
  emit(JsonLine().str("dir", "P").str("text", bytes));
}

void InspectedSession::rule_hit(std::string_view rule, bool from_client) {
  emit(JsonLine().str("event", "rule").str("rule", rule).str("on", from_client ? "command" : "response"));
}

void InspectedSession::finding(const session::FindingReport& report) {
  JsonLine event;
  event.str("event", "finding").str("finding", report.name).str("detail", report.detail);
  if (report.bytes > 0) event.num("bytes", report.bytes);
  emit(event.str("meaning", report.meaning).str("fix", report.fix));
}

void InspectedSession::protocol_error(bool from_client, imap::ErrorCode code) {
  emit(JsonLine().str("event", "protocol_error").str("dir", from_client ? "C" : "S").str("kind", imap::error_code_name(code)));
}

void InspectedSession::client_identified(const identify::ClientInfo& client, bool settled) {
  // The identifier re-guesses at every command: only changes are written.
  const auto identity = std::hash<std::string>{}(client.family + '\0' + client.version + '\0' + client.id_name + '\0' +
                                                 std::string(identify::id_method_name(client.method)) +
                                                 (settled ? "1" : "0"));
  if (identity == last_identity_) return;
  last_identity_ = identity;
  emit(JsonLine()
           .str("event", "client")
           .str("family", client.family)
           .str("version", client.version)
           .str("name", client.id_name)
           .str("method", identify::id_method_name(client.method))
           .real("confidence", client.confidence)
           .flag("settled", settled));
  if (live_) {
    live_->update([&](LiveFacts& f) {
      f.client = client;
      f.client_settled = settled;
    });
  }
  if (settled && !family_) {
    family_ = client.family;
    learnt_ = true;
    client_matches_ = owner_.options().selection.client_matches(client.family);
    decide();
  }
}

void InspectedSession::client_tls_started(std::string_view version) {
  if (live_) live_->update([&](LiveFacts& f) { f.tls = std::string(version); });
  emit(JsonLine().str("event", "tls").str("side", "client").str("version", version));
}

void InspectedSession::session_closed(session::CloseReason reason, const session::CloseCause& cause) {
  JsonLine line;
  line.str("event", "close").str("reason", session::close_reason_name(reason));
  if (!cause.cause.empty()) line.str("cause", cause.cause);
  if (!cause.detail.empty()) line.str("cause_detail", cause.detail);
  emit(line);
  if (decision_ == Decision::Pending) {
    decision_ = Decision::Drop;  // never learnt whether it was wanted
    pending_.clear();
  }
  if (live_) live_->close(session::close_reason_name(reason));
}

// The live view's facts: what the session is doing, from its commands and answers.
void InspectedSession::command(const imap::Command& c) {
  if (c.kind != imap::CommandKind::Tagged || !live_) return;
  if (c.verb == imap::Verb::Select || c.verb == imap::Verb::Examine) {
    auto& x = exchange();
    x.select_tag = std::string(c.tag);
    x.select_mailbox = c.args.empty() ? std::string() : c.args.front().string_value().value_or("");
  }
  std::string name = c.uid ? "UID " + imap::ascii_upper(c.name) : imap::ascii_upper(c.name);
  const auto now = now_us();
  live_->update([&](LiveFacts& f) {
    f.last_command = std::move(name);
    f.last_command_us = now;
    ++f.commands;
  });
}

void InspectedSession::command_done(std::string_view tag, imap::Verb verb, bool, imap::Status status, bool) {
  if (!live_) return;
  const bool ok = status == imap::Status::Ok;
  live_->update([&](LiveFacts& f) {
    switch (verb) {
      case imap::Verb::Login:
      case imap::Verb::Authenticate:
        if (ok) f.state = "authenticated";
        break;
      case imap::Verb::Select:
      case imap::Verb::Examine:
        if (!exchange_ || tag != exchange_->select_tag) break;
        // A failed SELECT leaves no mailbox selected (RFC 9051 6.3.2).
        f.state = ok ? "selected" : "authenticated";
        f.mailbox = ok ? std::move(exchange_->select_mailbox) : std::string();
        exchange_->select_tag.clear();
        exchange_->select_mailbox.clear();
        break;
      case imap::Verb::Close:
      case imap::Verb::Unselect:
        if (ok) {
          f.state = "authenticated";
          f.mailbox.clear();
        }
        break;
      case imap::Verb::Idle:
        f.state = f.mailbox.empty() ? "authenticated" : "selected";
        break;
      case imap::Verb::Logout:
        f.state = "logout";
        break;
      default:
        break;
    }
  });
}

void InspectedSession::idle_started() {
  idling_ = true;
  if (exchange_ && exchange_->quiet()) {
    exchange_.reset();
  } else if (exchange_) {
    exchange_->client_text.release_memory();
    exchange_->server_text.release_memory();
  }
  if (!live_) return;
  live_->update([](LiveFacts& f) { f.state = "idle"; });
  live_->pack_events();
}

}  // namespace imapscope::inspect
