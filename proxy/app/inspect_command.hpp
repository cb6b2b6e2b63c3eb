// `imapscope inspect`: reads transcripts back (see inspect/reader.hpp).
#pragma once

#include <string>
#include <vector>

namespace imapscope::app {

// imapscope inspect [--session N] [--command NAME] [--from T] [--to T] [--summary] [--json] FILE...
// Throws ConfigError for bad arguments; returns the exit code.
int inspect_command(const std::vector<std::string>& args);
std::string inspect_usage();

}  // namespace imapscope::app
