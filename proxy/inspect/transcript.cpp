#include "proxy/inspect/transcript.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view kind_name(imap::ResponseKind kind) {
  switch (kind) {
    case imap::ResponseKind::Continuation: return "continuation";
    case imap::ResponseKind::Status: return "untagged_status";
    case imap::ResponseKind::Tagged: return "tagged";
    case imap::ResponseKind::Data: break;
  }
  return "data";
}

json literals_json(std::vector<LiteralDigest> literals) {
  json out = json::array();
  for (auto& l : literals) {
    json item{{"size", l.size}};
    if (!l.sha256.empty()) item["sha256"] = std::move(l.sha256);
    if (!l.head.empty()) {
      // Payloads are bytes, not text: base64, and how much of it this is.
      item["data"] = base64_encode(l.head);
      if (l.head.size() < l.size) item["truncated"] = true;
    }
    out.push_back(std::move(item));
  }
  return out;
}

}  // namespace

Transcripts::Transcripts(TranscriptOptions options) : options_(std::move(options)), writer_(options_.writer) {}

Transcripts::~Transcripts() {
  writer_.flush();
  util::log_line(writer_.dropped() > 0 ? util::LogLevel::Warning : util::LogLevel::Info,
                 "event=transcripts_closed written=" + std::to_string(writer_.written()) +
                     " dropped=" + std::to_string(writer_.dropped()));
}

std::unique_ptr<session::Observer> Transcripts::session_started(const session::SessionStart& start) {
  double draw = 0;
  {
    std::lock_guard lock(random_mutex_);
    draw = std::uniform_real_distribution<double>(0, 1)(random_);
  }
  if (!options_.selection.admits_connection(start.client_address, draw)) return nullptr;
  return std::make_unique<SessionTranscript>(*this, start);
}

SessionTranscript::SessionTranscript(Transcripts& owner, const session::SessionStart& start)
    : owner_(owner),
      id_(start.id),
      client_text_(owner.options().body_cap),
      server_text_(owner.options().body_cap) {
  const auto& s = owner_.options().selection;
  decision_ = s.wants_user() || s.wants_client() ? Decision::Pending : Decision::Keep;
  emit({{"event", "start"},
        {"listener", std::string(start.listener)},
        {"tls", std::string(start.tls)},
        {"client_address", std::string(start.client_address)}});
}

SessionTranscript::~SessionTranscript() = default;

void SessionTranscript::emit(json event) {
  if (decision_ == Decision::Drop) return;
  event["t"] = now_us();
  event["s"] = id_;
  // Lines may carry 8-bit bytes that aren't UTF-8: replaced, never thrown on.
  std::string line = event.dump(-1, ' ', false, json::error_handler_t::replace);
  if (decision_ == Decision::Keep) {
    owner_.writer().write(std::move(line));
    return;
  }
  pending_.push_back(std::move(line));
  if (pending_.size() > owner_.options().max_pending_events) {
    decision_ = Decision::Drop;  // never learnt who it is in time
    pending_.clear();
  }
}

void SessionTranscript::decide() {
  if (decision_ != Decision::Pending) return;
  const auto& s = owner_.options().selection;
  if ((s.wants_user() && !user_known_) || (s.wants_client() && !client_known_)) return;
  const bool keep = (!s.wants_user() || user_matches_) && (!s.wants_client() || client_matches_);
  decision_ = keep ? Decision::Keep : Decision::Drop;
  if (keep) {
    for (auto& line : pending_) owner_.writer().write(std::move(line));
  }
  pending_.clear();
  pending_.shrink_to_fit();
}

void SessionTranscript::learn_user(const imap::Command& c) {
  std::optional<std::string> user;
  if (c.kind == imap::CommandKind::Tagged && c.verb == imap::Verb::Login && !c.args.empty()) {
    user = c.args.front().string_value();
  } else if (c.kind == imap::CommandKind::Tagged && c.verb == imap::Verb::Authenticate && !c.args.empty()) {
    sasl_mechanism_ = std::string(c.args.front().text);
    sasl_answers_ = 0;
    if (c.args.size() > 1) user = sasl_user(sasl_mechanism_, c.args[1].text, true);
    if (user) sasl_answers_ = 1;
  } else if (c.kind == imap::CommandKind::SaslResponse && !sasl_mechanism_.empty()) {
    user = sasl_user(sasl_mechanism_, c.line, sasl_answers_ == 0);
    ++sasl_answers_;
  }
  if (!user || user_known_) return;
  user_known_ = true;
  user_matches_ = owner_.options().selection.user_matches(*user);
  emit({{"event", "user"}, {"user", user_label(*user, owner_.options().user_names)}});
  decide();
}

void SessionTranscript::client_bytes(const imap::Command& c, imap::EventKind kind, std::string_view raw) {
  if (!client_in_message_) {
    client_in_message_ = true;
    // Inside AUTHENTICATE every client line is a credential, whatever the decoder
    // made of it (a line over the limit is not even parsed).
    client_sensitive_ = carries_credentials(c) || !sasl_mechanism_.empty();
  }
  if (!client_sensitive_) client_text_.add(raw, true);
  if (kind != imap::EventKind::Message) return;
  client_in_message_ = false;
  json event{{"dir", "C"}};
  if (client_sensitive_) {
    learn_user(c);
    event["kind"] = c.kind == imap::CommandKind::SaslResponse ? "sasl" : "command";
    const bool renderable = c.kind == imap::CommandKind::SaslResponse || (!c.rejected && !c.tag.empty());
    event["text"] = renderable ? redacted_text(c, owner_.options().user_names) : std::string("*** (credentials)");
    if (!c.tag.empty() && c.kind == imap::CommandKind::Tagged) event["tag"] = std::string(c.tag);
    if (c.kind == imap::CommandKind::Tagged) event["command"] = imap::ascii_upper(c.name);
  } else {
    event["kind"] = c.kind == imap::CommandKind::IdleDone ? "done" : "command";
    if (c.kind == imap::CommandKind::Tagged && !c.tag.empty()) {
      event["tag"] = std::string(c.tag);
      event["command"] = c.uid ? "UID " + imap::ascii_upper(c.name) : imap::ascii_upper(c.name);
    }
    event["text"] = client_text_.take_text();
    auto literals = client_text_.take_literals();
    if (!literals.empty()) event["literals"] = literals_json(std::move(literals));
  }
  if (c.rejected) event["rejected"] = true;
  emit(std::move(event));
}

void SessionTranscript::server_bytes(const imap::Response& r, imap::EventKind kind, std::string_view raw) {
  server_in_message_ = true;
  server_text_.add(raw, true);
  if (kind != imap::EventKind::Message) return;
  server_in_message_ = false;
  json event{{"dir", "S"}, {"kind", kind_name(r.kind)}, {"text", server_text_.take_text()}};
  if (r.kind == imap::ResponseKind::Tagged) event["tag"] = std::string(r.tag);
  if (r.status != imap::Status::None) event["status"] = std::string(imap::status_name(r.status));
  if (r.kind == imap::ResponseKind::Data && !r.name_text.empty()) event["name"] = imap::ascii_upper(r.name_text);
  auto literals = server_text_.take_literals();
  if (!literals.empty()) event["literals"] = literals_json(std::move(literals));
  emit(std::move(event));
  // The end of AUTHENTICATE / LOGIN: a user still unknown will stay unknown.
  if (r.kind == imap::ResponseKind::Tagged && r.matched &&
      (r.command_verb == imap::Verb::Authenticate || r.command_verb == imap::Verb::Login)) {
    sasl_mechanism_.clear();
    if (owner_.options().selection.wants_user() && !user_known_ && r.status == imap::Status::Ok) {
      user_known_ = true;
      user_matches_ = false;
      decide();
    }
  }
}

void SessionTranscript::proxy_to_client(std::string_view bytes) {
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) bytes.remove_suffix(1);
  emit({{"dir", "P"}, {"text", std::string(bytes)}});
}

void SessionTranscript::rule_hit(std::string_view rule, bool from_client) {
  emit({{"event", "rule"}, {"rule", std::string(rule)}, {"on", from_client ? "command" : "response"}});
}

void SessionTranscript::protocol_error(bool from_client, imap::ErrorCode code) {
  emit({{"event", "protocol_error"}, {"dir", from_client ? "C" : "S"}, {"kind", std::string(imap::error_code_name(code))}});
}

void SessionTranscript::client_identified(const identify::ClientInfo& client, bool settled) {
  // The identifier re-guesses at every command: only changes are written.
  std::string identity = client.family + '\0' + client.version + '\0' +
                         std::string(identify::id_method_name(client.method)) + (settled ? "1" : "0");
  if (identity == last_identity_) return;
  last_identity_ = std::move(identity);
  emit({{"event", "client"},
        {"family", client.family},
        {"version", client.version},
        {"method", std::string(identify::id_method_name(client.method))},
        {"confidence", client.confidence},
        {"settled", settled}});
  if (settled && !client_known_) {
    client_known_ = true;
    client_matches_ = owner_.options().selection.client_matches(client.family);
    decide();
  }
}

void SessionTranscript::client_tls_started(std::string_view version) {
  emit({{"event", "tls"}, {"side", "client"}, {"version", std::string(version)}});
}

void SessionTranscript::session_closed(session::CloseReason reason) {
  emit({{"event", "close"}, {"reason", std::string(session::close_reason_name(reason))}});
  if (decision_ == Decision::Pending) {
    decision_ = Decision::Drop;  // never learnt whether it was wanted
    pending_.clear();
  }
}

}  // namespace imapscope::inspect
