// The inspector: everything imapscope records of sessions for people to read. One
// observer per session (InspectedSession) turns its traffic into redacted JSON event
// lines; they go to the live view (LiveRegistry, the admin API) and, for the
// sessions selected by the config or by an on-demand capture, to transcript files
// (TranscriptWriter). See docs/inspector.md.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include "proxy/inspect/captures.hpp"
#include "proxy/inspect/live.hpp"
#include "proxy/inspect/redact.hpp"
#include "proxy/inspect/selection.hpp"
#include "proxy/inspect/writer.hpp"
#include "proxy/session/observer.hpp"

namespace imapscope::inspect {

struct InspectorOptions {
  std::optional<WriterOptions> transcripts;  // none: no files (the live view only)
  Selection selection;                       // sessions written without a capture
  UserNames user_names = UserNames::Hashed;
  std::string label_key;                     // keys the Hashed labels (<state_dir>/label-key)
  std::size_t max_pending_events = 256;      // held while waiting for the user or client to be known
  std::size_t body_cap = 0;                  // literal payload bytes kept per literal (base64); 0: none
  bool live = true;                          // the live view (admin API)
  LiveLimits live_limits;
};

class Inspector final : public session::Telemetry {
 public:
  // Throws std::runtime_error when the transcript folder can't be used.
  explicit Inspector(InspectorOptions options);
  ~Inspector() override;  // writes what is queued, logs what was written and dropped

  std::unique_ptr<session::Observer> session_started(const session::SessionStart& start) override;
  void session_ended(std::string_view, std::string_view, session::CloseReason, double) override {}
  void bytes(bool, std::uint64_t) override {}
  void tls_handshake(bool, bool, std::string_view, bool) override {}
  void upstream_connected(bool, double) override {}
  void reload(bool) override {}

  const InspectorOptions& options() const { return options_; }
  TranscriptWriter* writer() { return writer_ ? &*writer_ : nullptr; }
  LiveRegistry* live() { return options_.live ? &live_ : nullptr; }
  Captures& captures() { return captures_; }

 private:
  InspectorOptions options_;
  std::optional<TranscriptWriter> writer_;
  LiveRegistry live_;
  Captures captures_;
  std::mutex random_mutex_;
  std::mt19937_64 random_{std::random_device{}()};
};

}  // namespace imapscope::inspect
