#include "proxy/inspect/inspector.hpp"

#include "proxy/inspect/inspected_session.hpp"
#include "proxy/util/log.hpp"

namespace imapscope::inspect {

Inspector::Inspector(InspectorOptions options) : options_(std::move(options)), live_(options_.live_limits) {
  if (options_.transcripts) writer_.emplace(*options_.transcripts);
}

Inspector::~Inspector() {
  if (!writer_) return;
  writer_->flush();
  util::log_line(writer_->dropped() > 0 ? util::LogLevel::Warning : util::LogLevel::Info,
                 "event=transcripts_closed written=" + std::to_string(writer_->written()) +
                     " dropped=" + std::to_string(writer_->dropped()));
}

std::unique_ptr<session::Observer> Inspector::session_started(const session::SessionStart& start) {
  if (!writer_ && !options_.live) return nullptr;
  bool admitted = false;
  if (writer_) {  // the sample's draw (under a lock) only where transcripts are written
    double draw = 0;
    {
      std::lock_guard lock(random_mutex_);
      draw = std::uniform_real_distribution<double>(0, 1)(random_);
    }
    admitted = options_.selection.admits_connection(start.client_address, draw);
  }
  return std::make_unique<InspectedSession>(*this, start, admitted);
}

}  // namespace imapscope::inspect
