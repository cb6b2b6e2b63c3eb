// Who is talking, as far as imapscope can tell: what rules match on and what
// metrics and transcripts show. family is a name from the signatures file (a
// bounded set, so it is safe as a metric label), "other" for a client that named
// itself with ID but is in no signature, or "unknown".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::identify {

enum class IdMethod : std::uint8_t {
  Unknown,    // nothing seen yet, or nothing matched well enough
  Heuristic,  // tag shape, opening commands, command case
  Id,         // the client's ID command (RFC 2971)
};
std::string_view id_method_name(IdMethod method);

inline constexpr std::string_view kUnknownFamily = "unknown";
inline constexpr std::string_view kOtherFamily = "other";

struct ClientInfo {
  std::string family{kUnknownFamily};
  std::string version;  // as the client reported it (ID), else empty
  IdMethod method = IdMethod::Unknown;
  double confidence = 0;  // 1 from ID; from heuristics, how well the best signature fit
  // The name the client gave in ID, cleaned for logs (printable ASCII, at most 64
  // characters); never a metric label: a client that no signature knows is "other"
  // with its name here.
  std::string id_name;
};

}  // namespace imapscope::identify
