// Transcripts: one JSON line per event of a selected session (see README.md,
// "Transcripts"), written by a TranscriptWriter. Transcripts is the process-wide
// part (selection, writer); SessionTranscript observes one session.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/inspect/redact.hpp"
#include "proxy/inspect/selection.hpp"
#include "proxy/inspect/stream_text.hpp"
#include "proxy/inspect/writer.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::inspect {

struct TranscriptOptions {
  WriterOptions writer;
  Selection selection;
  UserNames user_names = UserNames::Hashed;
  std::size_t max_pending_events = 256;  // held while waiting for the user or client to be known
  std::size_t body_cap = 0;              // literal payload bytes written per literal (base64); 0: none
};

class Transcripts final : public session::Telemetry {
 public:
  explicit Transcripts(TranscriptOptions options);
  ~Transcripts() override;  // writes what is queued, logs what was written and dropped

  std::unique_ptr<session::Observer> session_started(const session::SessionStart& start) override;
  void session_ended(std::string_view, std::string_view, session::CloseReason, double) override {}
  void bytes(bool, std::uint64_t) override {}
  void tls_handshake(bool, bool, std::string_view) override {}
  void upstream_connected(bool, double) override {}
  void reload(bool) override {}

  TranscriptWriter& writer() { return writer_; }
  const TranscriptOptions& options() const { return options_; }

 private:
  TranscriptOptions options_;
  TranscriptWriter writer_;
  std::mutex random_mutex_;
  std::mt19937_64 random_{std::random_device{}()};
};

class SessionTranscript final : public session::Observer {
 public:
  SessionTranscript(Transcripts& owner, const session::SessionStart& start);
  ~SessionTranscript() override;

  void command(const imap::Command&) override {}
  void command_done(std::string_view, imap::Verb, bool, imap::Status, bool) override {}
  void idle_started() override {}
  void idle_keepalive() override {}
  void literal_bytes(bool, std::uint64_t) override {}
  void protocol_error(bool from_client, imap::ErrorCode code) override;
  void client_identified(const identify::ClientInfo& client, bool settled) override;
  void client_bytes(const imap::Command& command, imap::EventKind kind, std::string_view raw) override;
  void server_bytes(const imap::Response& response, imap::EventKind kind, std::string_view raw) override;
  void proxy_to_client(std::string_view bytes) override;
  void rule_hit(std::string_view rule, bool from_client) override;
  void client_tls_started(std::string_view version) override;
  void session_closed(session::CloseReason reason) override;

 private:
  enum class Decision : std::uint8_t { Pending, Keep, Drop };
  void emit(nlohmann::json event);
  void decide();
  void learn_user(const imap::Command& command);

  Transcripts& owner_;
  std::uint64_t id_;
  Decision decision_ = Decision::Pending;
  std::vector<std::string> pending_;  // lines held until the decision
  bool user_known_ = false, user_matches_ = false;
  bool client_known_ = false, client_matches_ = false;
  // The message being read in each direction.
  StreamText client_text_, server_text_;
  bool client_in_message_ = false, server_in_message_ = false;
  bool client_sensitive_ = false;
  std::string sasl_mechanism_;  // during AUTHENTICATE: for the user name only
  std::string last_identity_;   // the last client event written
  unsigned sasl_answers_ = 0;
};

}  // namespace imapscope::inspect
