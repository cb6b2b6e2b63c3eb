// One session as the inspector sees it: its traffic turned into redacted JSON event
// lines (see docs/inspector.md, "Transcripts"), the facts the live view shows, and whether
// the lines go to a transcript: by the config's selection (decided once the user or
// client is known, lines held until then) or while an on-demand capture matches.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/inspect/inspector.hpp"
#include "proxy/inspect/json_line.hpp"
#include "proxy/inspect/stream_text.hpp"

namespace imapscope::inspect {

class InspectedSession final : public session::Observer {
 public:
  // admitted: whether the config's selection may want it (address, sample).
  InspectedSession(Inspector& owner, const session::SessionStart& start, bool admitted);
  ~InspectedSession() override;

  void command(const imap::Command& command) override;
  void command_done(std::string_view tag, imap::Verb verb, bool uid, imap::Status status, bool local) override;
  void idle_started() override;
  void idle_keepalive() override {}
  void literal_bytes(bool, std::uint64_t) override {}
  void protocol_error(bool from_client, imap::ErrorCode code) override;
  void client_identified(const identify::ClientInfo& client, bool settled) override;
  void client_bytes(const imap::Command& command, imap::EventKind kind, std::string_view raw) override;
  void server_bytes(const imap::Response& response, imap::EventKind kind, std::string_view raw) override;
  void proxy_to_client(std::string_view bytes) override;
  void rule_hit(std::string_view rule, bool from_client) override;
  void client_tls_started(std::string_view version) override;
  void session_closed(session::CloseReason reason, const session::CloseCause& cause) override;
  void finding(const session::FindingReport& report) override;

 private:
  enum class Decision : std::uint8_t { Pending, Keep, Drop };
  // Literal hashes (SHA-256 over every payload byte, ~0.8 CPU-s per GB) only where a
  // transcript may keep them: the live view alone shows sizes. Decided per literal
  // at its start, so a capture that starts later hashes from the next literal on.
  bool transcript_possible() const { return writer_ && (decision_ != Decision::Drop || capture_ != 0); }
  void emit(const JsonLine& event);
  void to_transcript(std::string line, std::int64_t now);
  void follow_captures(std::int64_t now);
  void decide();
  void learn_user(const imap::Command& command);

  Inspector& owner_;
  TranscriptWriter* writer_;
  std::shared_ptr<LiveSession> live_;
  std::uint64_t id_;
  std::string address_;  // the client's, without port

  // The config's selection.
  Decision decision_ = Decision::Pending;
  std::vector<std::string> pending_;  // lines held until the decision
  std::optional<std::string> user_;   // the login name (never written as is unless the policy says so)
  std::optional<std::string> family_;  // once identification settled
  bool user_matches_ = false, client_matches_ = false;

  // On-demand captures: the one writing this session, and when to look again.
  std::uint64_t capture_ = 0;
  std::int64_t capture_until_us_ = 0;
  std::uint64_t captures_seen_ = ~std::uint64_t{0};
  bool learnt_ = false;  // user or client became known since the last look

  // What only a session exchanging messages needs: the message being read in each
  // direction, an AUTHENTICATE or a SELECT in progress. Made on first use and given
  // back when the session goes into IDLE with nothing in flight, so that an idle
  // session (most of them) doesn't carry it: ~0.4 KiB each.
  struct Exchange {
    explicit Exchange(std::size_t body_cap) : client_text(body_cap), server_text(body_cap) {}
    StreamText client_text, server_text;
    bool client_in_message = false;
    bool client_sensitive = false;
    unsigned sasl_answers = 0;
    std::string sasl_mechanism;            // during AUTHENTICATE: for the user name only
    std::string select_tag, select_mailbox;  // a SELECT/EXAMINE waiting for its answer
    bool quiet() const {
      return client_text.empty() && server_text.empty() && !client_in_message && sasl_mechanism.empty() &&
             select_tag.empty();
    }
  };
  Exchange& exchange();

  std::unique_ptr<Exchange> exchange_;
  bool idling_ = false;  // from the server's "+" to IDLE until the client's next bytes
  std::size_t last_identity_ = 0;  // a hash of the last client event written
};

}  // namespace imapscope::inspect
