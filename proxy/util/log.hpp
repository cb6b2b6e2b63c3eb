// One log line per event, key=value, to stderr: what happened, in which session,
// doing what (nginx's log->action). Never pass credentials here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::util {

enum class LogLevel : std::uint8_t { Debug, Info, Warning, Error };

void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
// Writes "<time> level=<level> <fields>\n" atomically.
void log_line(LogLevel level, std::string_view fields);

// Quotes a value for key="value" fields; control characters are escaped and the
// value is cut at max_length (values can come from the network).
std::string log_quote(std::string_view value, std::size_t max_length = 200);

}  // namespace imapscope::util
