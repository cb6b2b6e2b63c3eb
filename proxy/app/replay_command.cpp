#include "proxy/app/replay_command.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "proxy/app/config.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "proxy/inspect/reader.hpp"
#include "proxy/inspect/replay_plan.hpp"
#include "proxy/inspect/stream_text.hpp"
#include "proxy/transport/tls_context.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::app {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using inspect::ResponseLine;

// Something went wrong on the wire; what() says what, for the report.
struct WireError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One blocking connection with a deadline on every operation: each starts an
// asynchronous operation and runs the io_context until it completes or the deadline
// passes (then it is cancelled).
class Connection {
 public:
  Connection(const transport::Endpoint& server, bool tls, bool verify, const std::string& ca, Clock::duration timeout)
      : socket_(io_), timeout_ms_(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count()) {
    asio::error_code ec;
    asio::ip::tcp::resolver resolver(io_);
    const auto endpoints = resolver.resolve(server.host, std::to_string(server.port), ec);
    if (ec) throw WireError("can't resolve " + server.host + ": " + ec.message());
    ec = run([&](auto done) { asio::async_connect(socket_, endpoints, done); }, Clock::now() + timeout);
    if (ec) throw WireError("can't connect: " + ec.message());
    if (!tls) return;
    try {
      context_ = transport::make_client_tls_context(ca, verify);
    } catch (const std::exception& e) {
      throw ConfigError(std::string("replay: ") + e.what());
    }
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *context_);
    SSL* ssl = tls_->native_handle();
    asio::ip::make_address(server.host, ec);
    if (ec) {  // SNI takes a name, never an address; SSL_set_tlsext_host_name is a macro with a C cast
      SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, const_cast<char*>(server.host.c_str()));
    }
    if (verify) {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      SSL_set1_host(ssl, server.host.c_str());
    }
    ec = run([&](auto done) { tls_->async_handshake(asio::ssl::stream_base::client, done); }, Clock::now() + timeout);
    if (ec) {
      throw WireError("TLS handshake failed: " + ec.message() +
                      (verify ? " (--ca FILE names the CA; --insecure skips verification)" : ""));
    }
  }

  // Some bytes into buf; throws WireError on timeout, close or error.
  std::size_t read_some(char* buf, std::size_t size, Clock::time_point deadline) {
    std::size_t n = 0;
    const auto ec = run(
        [&](auto done) {
          if (tls_) tls_->async_read_some(asio::buffer(buf, size), done);
          else socket_.async_read_some(asio::buffer(buf, size), done);
        },
        deadline, &n);
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      throw WireError("the server closed the connection");
    }
    if (ec == asio::error::timed_out) {
      throw WireError("no answer within " + std::to_string(timeout_ms_) + " ms (--timeout-ms)");
    }
    if (ec) throw WireError("reading from the server: " + ec.message());
    return n;
  }

  void write(std::string_view bytes, Clock::time_point deadline) {
    const auto ec = run(
        [&](auto done) {
          if (tls_) asio::async_write(*tls_, asio::buffer(bytes), done);
          else asio::async_write(socket_, asio::buffer(bytes), done);
        },
        deadline);
    if (ec == asio::error::timed_out) throw WireError("the server stopped reading (--timeout-ms)");
    if (ec) throw WireError("writing to the server: " + ec.message());
  }

 private:
  // The completion of any operation: connect, handshake, read, write.
  struct Done {
    bool* finished;
    asio::error_code* result;
    std::size_t* transferred;
    void operator()(const asio::error_code& ec, std::size_t n = 0) const {
      *finished = true;
      *result = ec;
      if (transferred) *transferred = n;
    }
    void operator()(const asio::error_code& ec, const asio::ip::tcp::endpoint&) const { (*this)(ec); }
  };

  template <typename Start>
  asio::error_code run(Start start, Clock::time_point deadline, std::size_t* transferred = nullptr) {
    bool finished = false;
    asio::error_code result;
    start(Done{&finished, &result, transferred});
    io_.restart();
    io_.run_until(deadline);
    if (finished) return result;
    asio::error_code ignored;
    socket_.cancel(ignored);  // the handler runs with operation_aborted
    io_.restart();
    io_.run();
    return asio::error::timed_out;
  }

  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::int64_t timeout_ms_;  // for messages only: each operation has its own deadline
  transport::TlsContextPtr context_;
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
};

struct Received {
  imap::ResponseKind kind = imap::ResponseKind::Data;
  std::string tag;
  imap::Status status = imap::Status::None;
  ResponseLine line;
};

// Server messages, framed by the codec's response decoder (literals in FETCH answers
// included), rendered as transcripts render them. Memory: the read buffer, what the
// decoder keeps (bounded by its limits) and one line's text.
class ResponseReader {
 public:
  explicit ResponseReader(Connection& connection) : connection_(connection) {}

  Received next(Clock::time_point deadline) {
    for (;;) {
      std::string_view input(buffer_.data() + pos_, buffer_.size() - pos_);
      for (;;) {
        const auto ev = decoder_.next(input);
        pos_ = buffer_.size() - input.size();
        if (ev.kind == imap::EventKind::NeedMore || ev.kind == imap::EventKind::Blocked) break;
        if (ev.kind == imap::EventKind::Error) {
          throw WireError("the server sent what the decoder refuses: " + std::string(ev.error.reason));
        }
        if (ev.kind == imap::EventKind::Skipped) continue;
        text_.add(ev.raw, true);
        if (ev.kind != imap::EventKind::Message) continue;
        const auto& r = decoder_.response();
        Received out{r.kind, std::string(r.tag), r.status, {text_.take_text(), {}}};
        for (auto& l : text_.take_literals()) out.line.literals.push_back({l.size, std::move(l.sha256)});
        return out;
      }
      buffer_.resize(64 * 1024);
      buffer_.resize(connection_.read_some(buffer_.data(), buffer_.size(), deadline));
      pos_ = 0;
    }
  }

 private:
  // Answers may be longer than the 64 KiB a command line gets (a SEARCH of many
  // UIDs): still bounded, but roomier.
  static imap::DecoderLimits limits() {
    imap::DecoderLimits l;
    l.max_line_length = 8 << 20;
    return l;
  }

  Connection& connection_;
  imap::DecoderLimits limits_ = limits();
  imap::SessionState state_{limits_};
  imap::ResponseDecoder decoder_{state_, limits_};
  inspect::StreamText text_{0};
  std::string buffer_;
  std::size_t pos_ = 0;
};

struct Options {
  std::vector<std::string> files;
  std::optional<std::uint64_t> session;
  transport::Endpoint server;
  std::string user, password_file;
  bool tls = false, insecure = false, as_json = false;
  std::string ca;
  std::int64_t max_wait_ms = 2000, timeout_ms = 10000;
};

std::uint64_t number(const std::string& flag, const std::string& text) {
  const auto n = util::parse_unsigned(text);
  if (!n) throw ConfigError("replay: " + flag + " \"" + text + "\" is not a number");
  return *n;
}

Options parse(const std::vector<std::string>& args) {
  Options o;
  bool have_server = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw ConfigError("replay: " + a + " needs a value");
      return args[++i];
    };
    if (a == "--server") {
      o.server = parse_endpoint(value(), "replay: --server");
      have_server = true;
    } else if (a == "--user") {
      o.user = value();
    } else if (a == "--password-file") {
      o.password_file = value();
    } else if (a == "--session") {
      o.session = number(a, value());
    } else if (a == "--ca") {
      o.ca = value();
    } else if (a == "--max-wait-ms") {
      o.max_wait_ms = static_cast<std::int64_t>(std::min<std::uint64_t>(number(a, value()), 3'600'000));
    } else if (a == "--timeout-ms") {
      o.timeout_ms = static_cast<std::int64_t>(std::clamp<std::uint64_t>(number(a, value()), 1, 3'600'000));
    } else if (a == "--tls") {
      o.tls = true;
    } else if (a == "--insecure") {
      o.insecure = true;
    } else if (a == "--json") {
      o.as_json = true;
    } else if (!a.empty() && a[0] == '-') {
      throw ConfigError("replay: unknown option " + a);
    } else {
      o.files.push_back(a);
    }
  }
  if (o.files.empty()) throw ConfigError("replay needs a transcript file");
  if (!have_server) throw ConfigError("replay needs --server HOST:PORT");
  if (o.user.empty() || o.password_file.empty()) throw ConfigError("replay needs --user and --password-file");
  if ((o.insecure || !o.ca.empty()) && !o.tls) throw ConfigError("replay: --insecure and --ca go with --tls");
  return o;
}

std::string read_password(const std::string& path) {
  std::ifstream in(path);
  std::string password;
  if (!in || !std::getline(in, password)) throw ConfigError("replay: " + path + " can't be read");
  if (!password.empty() && password.back() == '\r') password.pop_back();
  if (password.empty()) throw ConfigError("replay: " + path + " holds no password on its first line");
  return password;
}

// What became of one step.
struct Result {
  const inspect::ReplayStep* step = nullptr;
  std::string verdict;  // same, differs, skipped, not_sent
  std::string failure;  // why the step couldn't finish (timeout, closed...)
  std::string status;   // of the tagged answer received
  std::string answer;   // the tagged answer's text
  inspect::Comparison comparison;
  std::size_t dropped = 0;  // received lines past the cap, counted only
};

void write_step(Connection& c, const inspect::Send& send, Clock::duration timeout) {
  for (const auto& piece : send.pieces) {
    if (!piece.bytes.empty()) c.write(piece.bytes, Clock::now() + timeout);
    std::string chunk;
    for (std::uint64_t off = 0; off < piece.padding; off += chunk.size()) {
      chunk.clear();
      inspect::padding_bytes(piece.padding, piece.padding_lines, off,
                             static_cast<std::size_t>(std::min<std::uint64_t>(64 * 1024, piece.padding - off)), chunk);
      c.write(chunk, Clock::now() + timeout);
    }
  }
}

Result run_step(const inspect::ReplayStep& step, Connection& c, ResponseReader& reader, Clock::duration timeout) {
  Result r{&step, "differs"};
  std::vector<ResponseLine> got;
  // Never more than the recording had, and some: a flood is counted, not kept.
  const std::size_t cap = step.expected.size() + 1000;
  bool answered = false;
  try {
    for (std::size_t i = 0; i < step.sends.size() && !answered; ++i) {
      const auto& send = step.sends[i];
      if (send.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(send.delay_ms));
      write_step(c, send, timeout);
      const bool last = i + 1 == step.sends.size();
      const auto deadline = Clock::now() + timeout;
      while (!answered) {
        auto m = reader.next(deadline);
        if (m.kind == imap::ResponseKind::Continuation) {
          if (!last) break;
          continue;  // a "+" nobody asked for: the protocol's, not the answer
        }
        answered = m.kind == imap::ResponseKind::Tagged && m.tag == step.tag;
        if (answered) {
          r.status = imap::status_name(m.status);
          r.answer = m.line.text;
        }
        if (got.size() < cap) got.push_back(inspect::normalise(std::move(m.line)));
        else ++r.dropped;
      }
    }
  } catch (const WireError& e) {
    r.failure = e.what();
  }
  std::vector<ResponseLine> expected;
  for (const auto& line : step.expected) expected.push_back(inspect::normalise(line));
  r.comparison = inspect::compare_responses(expected, got);
  if (r.comparison.same && r.failure.empty() && r.dropped == 0) r.verdict = "same";
  return r;
}

std::string shorten(const std::string& text, std::size_t max = 200) {
  return text.size() <= max ? text : text.substr(0, max) + "...";
}

struct Counts {
  int commands = 0, same = 0, differ = 0, approximated = 0, skipped = 0, not_sent = 0;
};

void print_text(const Options& o, const inspect::ReplayPlan& plan, const std::vector<Result>& results,
                const std::optional<ResponseLine>& greeting, const std::string& stopped, const Counts& n) {
  std::cout << "server " << o.server.to_string() << (o.tls ? " (TLS)" : " (plain)") << ", user " << o.user
            << "; commands are sent one at a time"
            << (plan.pipelined ? " (the recording pipelined some: serialised here)" : "") << "\n";
  if (plan.greeting && greeting &&
      !inspect::same_line(inspect::normalise(*plan.greeting), inspect::normalise(*greeting))) {
    std::cout << "greeting differs (not compared):\n  - " << inspect::render_line(*plan.greeting) << "\n  + "
              << inspect::render_line(*greeting) << "\n";
  }
  for (const auto& r : results) {
    const auto& s = *r.step;
    std::cout << shorten(s.display) << " ... " << (r.verdict == "not_sent" ? "not sent" : r.verdict);
    if (r.verdict == "skipped") std::cout << ": " << s.skipped;
    for (const auto& note : s.notes) std::cout << " (" << note << ")";
    std::cout << "\n";
    for (const auto& a : s.approximations) std::cout << "    approximated: " << a << "\n";
    if (r.verdict != "differs") continue;
    if (!r.failure.empty()) std::cout << "    stopped: " << r.failure << "\n";
    if (r.dropped) std::cout << "    " << r.dropped << " more lines received than kept\n";
    for (const auto& line : inspect::diff_listing(r.comparison)) std::cout << "    " << line << "\n";
  }
  if (!stopped.empty()) std::cout << "replay stopped: " << stopped << "\n";
  std::cout << "summary: " << n.commands << " commands, " << n.same << " same, " << n.differ << " differ, "
            << n.approximated << " approximated";
  if (n.skipped > 0) std::cout << ", " << n.skipped << " skipped";
  if (n.not_sent > 0) std::cout << ", " << n.not_sent << " not sent";
  std::cout << "\n";
}

json result_json(const Result& r) {
  const auto& s = *r.step;
  json j{{"tag", s.tag}, {"command", s.command}, {"text", s.display}, {"result", r.verdict},
         {"approximations", s.approximations}, {"notes", s.notes}};
  if (!s.skipped.empty()) j["reason"] = s.skipped;
  if (!r.status.empty()) j["status"] = r.status;
  if (!r.failure.empty()) j["failure"] = r.failure;
  if (r.dropped) j["lines_not_kept"] = r.dropped;
  if (r.verdict == "differs") j["diff"] = inspect::diff_listing(r.comparison, 2, 200);
  return j;
}

}  // namespace

std::string replay_usage() {
  return R"(usage: imapscope replay FILE... --server HOST:PORT --user U --password-file F
                        [--session N] [--tls] [--insecure] [--ca FILE] [--max-wait-ms N]
                        [--timeout-ms N] [--json]

Replays the client side of a recorded session (a transcript) against a real IMAP server
and reports the answers that differ from the recorded ones.
  --server HOST:PORT   the server to replay against
  --user U             log in as U (the transcript's credentials are redacted)
  --password-file F    U's password, first line of F (never printed)
  --session N          the session of the transcript to replay (default: the first with commands)
  --tls                implicit TLS towards the server
  --insecure           don't verify the server's certificate
  --ca FILE            CA certificates to verify it (default: the system store)
  --max-wait-ms N      longest pause kept from the recording (default 2000)
  --timeout-ms N       how long to wait for each answer (default 10000)
  --json               the report as JSON
  -h, --help           this text
Exit: 0 every answer as recorded, 1 some differ, 2 server unreachable, login failed or bad input.
)";
}

int replay_command(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::fputs(replay_usage().c_str(), stdout);
    return 0;
  }
  const Options o = parse(args);
  const std::string password = read_password(o.password_file);
  inspect::ReadFilter filter;
  filter.session = o.session;
  inspect::Transcript t;
  try {
    t = inspect::read_transcripts(o.files, filter);
  } catch (const std::exception& e) {  // an unreadable file, or a line that isn't what it seems
    throw ConfigError(std::string("replay: ") + e.what());
  }
  if (t.sessions.empty()) {
    throw ConfigError(o.session ? "replay: no session " + std::to_string(*o.session) + " in the files"
                                : "replay: the files hold no session");
  }
  // The named session, or the first to start of those with commands (a bare
  // connection, such as a port probe, has nothing to replay).
  auto replayable = [](const std::vector<json>& events) {
    return std::any_of(events.begin(), events.end(),
                       [](const json& e) { return e.contains("dir") && e["dir"] == "C"; });
  };
  auto chosen = t.sessions.end();
  std::string ids;
  std::size_t count = 0;
  for (auto it = t.sessions.begin(); it != t.sessions.end(); ++it) {
    if (!replayable(it->second)) continue;
    ids += " " + std::to_string(it->first);
    ++count;
    if (chosen == t.sessions.end() || it->second.front()["t"] < chosen->second.front()["t"]) chosen = it;
  }
  if (chosen == t.sessions.end()) {
    throw ConfigError(o.session ? "replay: session " + std::to_string(*o.session) + " has no commands to replay"
                                : "replay: no session in the files has commands to replay");
  }
  std::string note = "replaying session " + std::to_string(chosen->first);
  if (count > 1) note += " (sessions with commands:" + ids + "; --session N picks another)";
  const auto plan = inspect::build_replay_plan(chosen->first, chosen->second, {o.user, password, o.max_wait_ms});
  if (std::none_of(plan.steps.begin(), plan.steps.end(), [](const auto& s) { return s.skipped.empty(); })) {
    throw ConfigError("replay: session " + std::to_string(chosen->first) + " has no command to replay");
  }
  if (t.bad_lines) std::fprintf(stderr, "imapscope replay: %zu lines were not transcript events\n", t.bad_lines);
  if (!o.as_json) std::cout << note << "\n";

  const auto timeout = std::chrono::milliseconds(o.timeout_ms);
  std::unique_ptr<Connection> connection;
  std::optional<ResponseLine> greeting;
  std::optional<ResponseReader> reader;
  try {
    connection = std::make_unique<Connection>(o.server, o.tls, !o.insecure, o.ca, timeout);
    reader.emplace(*connection);
    auto g = reader->next(Clock::now() + timeout);
    if (g.status == imap::Status::Bye) throw WireError("the server refused the session: " + g.line.text);
    greeting = std::move(g.line);
  } catch (const WireError& e) {
    std::fprintf(stderr, "imapscope replay: %s: %s\n", o.server.to_string().c_str(), e.what());
    return 2;
  }

  std::vector<Result> results;
  std::string stopped;
  Counts n;
  for (const auto& step : plan.steps) {
    if (!step.skipped.empty() || !stopped.empty()) {
      const bool skipped = !step.skipped.empty();
      results.push_back({&step, skipped ? "skipped" : "not_sent"});
      ++(skipped ? n.skipped : n.not_sent);
      continue;
    }
    auto r = run_step(step, *connection, *reader, timeout);
    if (step.login && r.status != "OK") {
      const std::string answer = r.failure.empty() ? r.answer : r.failure;
      std::fprintf(stderr, "imapscope replay: login as %s at %s failed: %s\n", o.user.c_str(),
                   o.server.to_string().c_str(), answer.c_str());
      return 2;
    }
    ++n.commands;
    ++(r.verdict == "same" ? n.same : n.differ);
    if (!step.approximations.empty()) ++n.approximated;
    if (!r.failure.empty()) stopped = step.tag + ": " + r.failure;
    results.push_back(std::move(r));
  }

  if (o.as_json) {
    json out{{"session", plan.session}, {"server", o.server.to_string()}, {"tls", o.tls}, {"user", o.user},
             {"serialised", true}, {"pipelined_in_recording", plan.pipelined},
             {"summary", {{"commands", n.commands}, {"same", n.same}, {"differ", n.differ},
                          {"approximated", n.approximated}, {"skipped", n.skipped}, {"not_sent", n.not_sent}}}};
    if (plan.greeting && greeting) {
      out["greeting"] = {
          {"expected", inspect::render_line(*plan.greeting)},
          {"got", inspect::render_line(*greeting)},
          {"same", inspect::same_line(inspect::normalise(*plan.greeting), inspect::normalise(*greeting))}};
    }
    out["commands"] = json::array();
    for (const auto& r : results) out["commands"].push_back(result_json(r));
    if (!stopped.empty()) out["stopped"] = stopped;
    std::cout << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    print_text(o, plan, results, greeting, stopped, n);
  }
  return n.differ > 0 ? 1 : 0;
}

}  // namespace imapscope::app
