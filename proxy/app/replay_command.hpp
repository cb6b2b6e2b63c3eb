// `imapscope replay`: replays the client side of one recorded session (a transcript)
// against a real IMAP server and reports where its answers differ from the recorded
// ones. The plan and the comparison are sans-IO (inspect/replay_plan.hpp); this is
// the socket, the waits and the report.
#pragma once

#include <string>
#include <vector>

namespace imapscope::app {

// imapscope replay FILE... --server HOST:PORT --user U --password-file F [--session N]
//   [--tls] [--insecure] [--ca FILE] [--max-wait-ms N] [--timeout-ms N] [--json]
// Returns 0 when every command got the recorded answer, 1 when something differs,
// 2 when the server can't be reached or the login fails. Throws ConfigError for bad
// arguments or input (exit 2 as well). The password is never printed.
int replay_command(const std::vector<std::string>& args);
std::string replay_usage();

}  // namespace imapscope::app
