// What the diagnostics can find: client behaviours that cost mail servers and users
// (seeds 000, 001, 003). Each kind has a name (a metric label value: a bounded set),
// what it means and what usually fixes it, shown in the live view and transcripts
// and documented in docs/diagnostics.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::diagnose {

enum class FindingKind : std::uint8_t {
  UidvalidityChanged,
  FullResync,
  IdleChurn,
  KeepaliveWakeups,
  IdleWithoutSelect,
  ConnectionPerFolder,
  UserConnectionLimit,
  ErrorLoop,
  LoginFailureStorm,
  DeletedBuildUp,
  PollingInsteadOfIdle,
  InactivityTimeout,
};
constexpr std::size_t kFindingKinds = static_cast<std::size_t>(FindingKind::InactivityTimeout) + 1;

struct FindingText {
  std::string_view name;     // snake_case, the metric label value
  std::string_view meaning;  // what it means, one or two sentences
  std::string_view fix;      // what usually fixes it
};
const FindingText& finding_text(FindingKind kind);

struct Finding {
  FindingKind kind;
  std::string detail;       // this occurrence: mailbox, counts, durations (never a credential)
  std::uint64_t bytes = 0;  // what it cost on the wire, where known (full resync)
};

}  // namespace imapscope::diagnose
