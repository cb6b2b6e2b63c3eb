#include "proxy/replay/conversation.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/describe.hpp"
#include "proxy/imap/response_decoder.hpp"

namespace imapscope::replay {
namespace {

using imap::EventKind;

class Log {
 public:
  explicit Log(std::vector<std::string>& lines) : lines_(lines) {}

  // rejected: the event ends a message rejected by a limit.
  void add(Direction d, const imap::Event& ev, bool rejected, const std::string& described) {
    const std::string who = d == Direction::Client ? "C " : "S ";
    Run& run = runs_[d == Direction::Client ? 0 : 1];
    switch (ev.kind) {
      case EventKind::Error:
        // How a rejected message's bytes split into events depends on the reads:
        // log their total once, when the message ends.
        lines_.push_back(who + "error " + std::string(imap::error_code_name(ev.error.code)) +
                         " offset=" + std::to_string(ev.error.offset) + (ev.error.recoverable ? "" : " fatal") +
                         " head: " + described);
        run.rejecting = true;
        run.skipped = ev.raw.size();
        if (!ev.error.recoverable) fatal_lines_[d == Direction::Client ? 0 : 1] = who;
        break;
      case EventKind::Skipped:
        if (run.rejecting) {
          run.skipped += ev.raw.size();
          break;
        }
        [[fallthrough]];
      case EventKind::LiteralData:
        // Chunking depends on the reads too: merge runs into one line.
        if (last_direction_ == d && last_kind_ == ev.kind && !lines_.empty()) {
          run.merged += ev.raw.size();
        } else {
          run.merged = ev.raw.size();
          lines_.emplace_back();
        }
        lines_.back() = who + std::string(imap::event_kind_name(ev.kind)) + ' ' + std::to_string(run.merged);
        break;
      default:
        if (run.rejecting && (rejected || ev.kind == EventKind::Message)) {
          run.skipped += ev.raw.size();
          if (run.skipped) lines_.push_back(who + "skipped " + std::to_string(run.skipped));
          run.rejecting = false;
        }
        lines_.push_back(who + std::string(imap::event_kind_name(ev.kind)) + ' ' + described);
        break;
    }
    last_direction_ = d;
    last_kind_ = ev.kind;
  }

  // A stream that failed for good: what it skipped since.
  void finish() {
    for (int i = 0; i < 2; ++i) {
      if (runs_[i].rejecting && runs_[i].skipped) {
        lines_.push_back(fatal_lines_[i] + "skipped " + std::to_string(runs_[i].skipped));
      }
    }
  }

 private:
  struct Run {
    bool rejecting = false;
    std::size_t skipped = 0;
    std::size_t merged = 0;
  };
  std::vector<std::string>& lines_;
  Run runs_[2];
  std::string fatal_lines_[2] = {"C ", "S "};
  Direction last_direction_ = Direction::Client;
  EventKind last_kind_ = EventKind::NeedMore;
};

// Transcript text is taken as written, except {{CR}} {{LF}} {{CRLF}} {{xNN}}: IMAP
// itself is full of backslashes (\Seen, quoted escapes), braces never come doubled.
std::string unescape(std::string_view text, const std::string& where) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const auto open = text.find("{{", i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, open - i));
    const auto close = text.find("}}", open + 2);
    if (close == std::string_view::npos) throw std::runtime_error(where + ": unterminated {{");
    const auto name = text.substr(open + 2, close - open - 2);
    if (name == "CR") {
      out += '\r';
    } else if (name == "LF") {
      out += '\n';
    } else if (name == "CRLF") {
      out += "\r\n";
    } else if (name.size() == 3 && name[0] == 'x') {
      out.push_back(static_cast<char>(std::stoi(std::string(name.substr(1)), nullptr, 16)));
    } else {
      throw std::runtime_error(where + ": unknown escape {{" + std::string(name) + "}}");
    }
    i = close + 2;
  }
  return out;
}

void set_limit(imap::DecoderLimits& limits, const std::string& assignment, const std::string& where) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos) throw std::runtime_error(where + ": expected name=value in limits");
  const auto name = assignment.substr(0, eq);
  const auto value = std::stoull(assignment.substr(eq + 1));
  if (name == "max_line_length") limits.max_line_length = value;
  else if (name == "max_literal_size") limits.max_literal_size = value;
  else if (name == "max_literal_before_login") limits.max_literal_before_login = value;
  else if (name == "max_inline_literal") limits.max_inline_literal = value;
  else if (name == "max_list_depth") limits.max_list_depth = static_cast<unsigned>(value);
  else if (name == "max_tag_length") limits.max_tag_length = value;
  else if (name == "max_pending_commands") limits.max_pending_commands = value;
  else throw std::runtime_error(where + ": unknown limit " + name);
}

}  // namespace

RunResult run_script(const Script& script, const Splitter& splitter) {
  RunResult result;
  Log log(result.log);
  imap::SessionState state(script.limits);
  imap::CommandDecoder commands(state, script.limits);
  imap::ResponseDecoder responses(state, script.limits);
  std::string client_pending;
  std::string server_pending;
  bool tls_started = false;
  std::size_t discarded_client = 0;
  std::size_t discarded_server = 0;

  auto pump_client = [&] {
    std::string_view input = client_pending;
    for (;;) {
      const auto ev = commands.next(input);
      if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
      result.client_raw += ev.raw;
      log.add(Direction::Client, ev, commands.command().rejected, imap::describe_command(commands.command()));
    }
    client_pending.erase(0, client_pending.size() - input.size());
  };
  auto pump_server = [&] {
    std::string_view input = server_pending;
    for (;;) {
      const auto ev = responses.next(input);
      if (ev.kind == EventKind::NeedMore) break;
      if (ev.kind == EventKind::Blocked) {
        // What the relay does when the transport changes: after STARTTLS whatever
        // either side sent in plaintext before the handshake is dropped; after
        // COMPRESS the bytes would be inflated (a script has them in clear already).
        if (responses.response().effect == imap::SessionEffect::StartTls) {
          // A script can't do a TLS handshake: everything after STARTTLS is dropped.
          tls_started = true;
          discarded_client += client_pending.size();
          discarded_server += input.size();
          client_pending.clear();
          input = {};
        }
        state.transport_changed();
        continue;
      }
      result.server_raw += ev.raw;
      log.add(Direction::Server, ev, responses.response().rejected, imap::describe_response(responses.response()));
    }
    server_pending.erase(0, server_pending.size() - input.size());
    pump_client();  // the client may have been waiting for this
  };

  for (std::size_t i = 0; i < script.chunks.size(); ++i) {
    const auto& chunk = script.chunks[i];
    std::vector<std::size_t> pieces = splitter ? splitter(i, chunk.bytes.size())
                                               : std::vector<std::size_t>{chunk.bytes.size()};
    std::size_t at = 0;
    for (auto size : pieces) {
      const auto piece = chunk.bytes.substr(at, size);
      at += size;
      if (tls_started) {
        (chunk.direction == Direction::Client ? discarded_client : discarded_server) += piece.size();
      } else if (chunk.direction == Direction::Client) {
        result.client_input += piece;
        client_pending += piece;
        pump_client();
      } else {
        result.server_input += piece;
        server_pending += piece;
        pump_server();
      }
    }
  }
  log.finish();
  if (discarded_client) result.log.push_back("C discarded " + std::to_string(discarded_client));
  if (discarded_server) result.log.push_back("S discarded " + std::to_string(discarded_server));
  if (!client_pending.empty()) result.log.push_back("C unconsumed " + std::to_string(client_pending.size()));
  if (!server_pending.empty()) result.log.push_back("S unconsumed " + std::to_string(server_pending.size()));
  return result;
}

std::vector<Script> load_scripts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<Script> scripts;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string where = path + ":" + std::to_string(number);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("=== ", 0) == 0) {
      scripts.push_back(Script{line.substr(4), {}, {}, {}, number});
      continue;
    }
    if (scripts.empty()) throw std::runtime_error(where + ": content before the first '=== name'");
    Script& s = scripts.back();
    if (line.rfind("limits ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string w;
      while (words >> w) set_limit(s.limits, w, where);
      continue;
    }
    if (line.rfind("> ", 0) == 0) {
      s.expected.push_back(line.substr(2));
      continue;
    }
    if (line.size() < 2 || (line[0] != 'C' && line[0] != 'S')) throw std::runtime_error(where + ": unknown line");
    const Direction d = line[0] == 'C' ? Direction::Client : Direction::Server;
    const std::string_view body = line.size() > 3 ? std::string_view(line).substr(3) : std::string_view();
    std::string bytes;
    switch (line[1]) {
      case ':':  // a line: CRLF appended
        bytes = unescape(body, where) + "\r\n";
        break;
      case '~':  // bytes as written, no CRLF
        bytes = unescape(body, where);
        break;
      case '=': {  // "C= 5000 x": 5000 times the byte x
        std::istringstream words{std::string(body)};
        std::size_t count = 0;
        std::string what;
        if (!(words >> count >> what) || what.size() != 1) throw std::runtime_error(where + ": expected 'C= COUNT CHAR'");
        bytes.assign(count, what[0]);
        break;
      }
      default:
        throw std::runtime_error(where + ": expected C: C~ C= S: S~ S=");
    }
    s.chunks.push_back(Chunk{d, std::move(bytes)});
  }
  return scripts;
}

void rewrite_expectations(const std::string& path, const std::vector<std::vector<std::string>>& logs) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  in.close();

  std::ostringstream out;
  int index = -1;
  auto flush_case = [&] {
    if (index < 0) return;
    for (const auto& l : logs.at(static_cast<std::size_t>(index))) out << "> " << l << '\n';
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    if (l.rfind("=== ", 0) == 0) {
      flush_case();
      out << '\n';
      ++index;
      out << l << '\n';
      continue;
    }
    if (l.rfind("> ", 0) == 0 || (l.empty() && index >= 0)) continue;
    out << l << '\n';
  }
  flush_case();
  std::string text = out.str();
  while (text.size() > 1 && text[0] == '\n') text.erase(0, 1);
  std::ofstream(path) << text;
}

}  // namespace imapscope::replay
