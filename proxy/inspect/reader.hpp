// `imapscope inspect`: transcripts read back as conversations and summaries.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imapscope::inspect {

struct ReadFilter {
  std::optional<std::uint64_t> session;
  std::optional<std::string> command;  // upper case: only that command and its answers
  std::optional<std::int64_t> from_us, to_us;
};

// Events of the files, grouped by session, in time order (files may hold many
// sessions interleaved). Lines that aren't transcript events are skipped and counted.
struct Transcript {
  std::map<std::uint64_t, std::vector<nlohmann::json>> sessions;
  std::size_t bad_lines = 0;
};
Transcript read_transcripts(const std::vector<std::string>& files, const ReadFilter& filter);

// C:/S:/P: lines with the time since the session's first event, and each tagged
// answer's latency; rule hits, identity and TLS changes in between.
void render_conversation(std::ostream& out, std::uint64_t session, const std::vector<nlohmann::json>& events,
                         const ReadFilter& filter);
// Client identity and how it was found, command mix, latency per command
// (p50/p95/max), NO/BAD answers with their text, rule hits, bytes, how it ended.
nlohmann::json summarise(std::uint64_t session, const std::vector<nlohmann::json>& events);
void render_summary(std::ostream& out, const nlohmann::json& summary);

// "2026-11-23T00:14:41Z", "2026-11-23T00:14:41.5", or seconds since the epoch.
std::optional<std::int64_t> parse_time_us(const std::string& text);

}  // namespace imapscope::inspect
