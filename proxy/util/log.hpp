// One log line per event to stderr: what happened, in which session, doing what
// (nginx's log->action). Callers write key=value fields; the line goes out as
// key=value (the default) or as a JSON object for log shippers (Loki, Elasticsearch).
// Never pass credentials here.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::util {

enum class LogLevel : std::uint8_t { Debug, Info, Warning, Error };
enum class LogFormat : std::uint8_t { KeyValue, Json };

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void set_log_format(LogFormat format);
LogFormat log_format();
// Writes the line atomically: "<time> level=<level> <fields>\n", or
// {"ts":"<time>","level":"<level>",<fields>}. When stderr is the systemd journal
// (JOURNAL_STREAM names it), which stamps every line itself, key=value lines leave
// the time out, and every line starts with its syslog priority ("<6>").
void log_line(LogLevel level, std::string_view fields);

// The line log_line writes (without the newline), for tests.
std::string format_log_line(LogLevel level, std::string_view fields, LogFormat format, bool journal,
                            std::chrono::system_clock::time_point now);
// Whether stderr is the journal: JOURNAL_STREAM's "device:inode" is stderr's.
bool stderr_is_journal();

// Quotes a value for key="value" fields; control characters are escaped and the
// value is cut at max_length (values can come from the network).
std::string log_quote(std::string_view value, std::size_t max_length = 200);

}  // namespace imapscope::util
