#include "proxy/app/inspect_command.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "proxy/app/config.hpp"
#include "proxy/inspect/pcap.hpp"
#include "proxy/inspect/reader.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::app {
namespace {

// The export holds what the transcripts hold: owner-only like them, whatever the
// umask (a device such as /dev/stdout is written as it is).
void write_owner_only(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw ConfigError("inspect: " + path + " can't be written");
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0 && (!S_ISREG(st.st_mode) || ::fchmod(fd, 0600) == 0);
  for (std::size_t done = 0; ok && done < bytes.size();) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ::close(fd) == 0 && ok;
  if (!ok) throw ConfigError("inspect: " + path + " can't be written");
}

}  // namespace


std::string inspect_usage() {
  return R"(usage: imapscope inspect [--session N] [--command NAME] [--from T] [--to T]
                         [--summary] [--json] [--pcap OUT.pcapng] FILE...

Reads transcripts (written with --transcripts DIR) back: every session, or those chosen.
  --session N        only session N (the session= of the log lines)
  --command NAME     only this command and its answers (SELECT, FETCH, ...)
  --from T, --to T   only what happened in this time range (2026-11-23T00:14:41Z or epoch seconds)
  --summary          each session's summary only, not its conversation
  --json             JSON lines instead of text
  --pcap OUT.pcapng  write the sessions as a pcapng file that Wireshark dissects as IMAP
  -h, --help         this text
)";
}

// imapscope inspect [--session N] [--command NAME] [--from T] [--to T] [--summary] [--json] [--pcap OUT] FILE...
int inspect_command(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::fputs(inspect_usage().c_str(), stdout);
    return 0;
  }
  namespace in = inspect;
  in::ReadFilter filter;
  bool summary_only = false, as_json = false;
  std::string pcap;
  std::vector<std::string> files;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw ConfigError("inspect: " + a + " needs a value");
      return args[++i];
    };
    if (a == "--session") {
      const auto text = value();
      filter.session = util::parse_unsigned(text);
      if (!filter.session) throw ConfigError("inspect: --session \"" + text + "\" is not a session number");
    } else if (a == "--command") {
      std::string command = value();
      for (auto& c : command) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      filter.command = command;
    } else if (a == "--from" || a == "--to") {
      const auto text = value();
      const auto at = in::parse_time_us(text);
      if (!at) throw ConfigError("inspect: " + a + " \"" + text + "\" is not a time (2026-11-23T00:14:41Z or epoch seconds)");
      (a == "--from" ? filter.from_us : filter.to_us) = at;
    } else if (a == "--pcap") {
      pcap = value();
    } else if (a == "--summary") {
      summary_only = true;
    } else if (a == "--json") {
      as_json = true;
    } else if (!a.empty() && a[0] == '-') {
      throw ConfigError("inspect: unknown option " + a);
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) throw ConfigError("inspect needs transcript files");
  const auto t = in::read_transcripts(files, filter);
  if (!pcap.empty()) {
    std::ostringstream out;
    std::vector<std::pair<std::uint64_t, const std::vector<nlohmann::json>*>> sessions;
    for (const auto& [id, events] : t.sessions) sessions.emplace_back(id, &events);
    in::write_pcapng(out, sessions);
    write_owner_only(pcap, out.str());
    std::fprintf(stderr, "imapscope inspect: %zu sessions written to %s\n", sessions.size(), pcap.c_str());
    return 0;
  }
  nlohmann::json all = nlohmann::json::array();
  for (const auto& [id, events] : t.sessions) {
    const auto summary = in::summarise(id, events);
    if (as_json) {
      all.push_back(summary);
      continue;
    }
    if (!summary_only) in::render_conversation(std::cout, id, events, filter);
    in::render_summary(std::cout, summary);
    std::cout << "\n";
  }
  if (as_json) std::cout << all.dump(2) << "\n";
  if (t.bad_lines > 0) std::fprintf(stderr, "imapscope inspect: %zu lines were not transcript events\n", t.bad_lines);
  return 0;
}

}  // namespace imapscope::app
