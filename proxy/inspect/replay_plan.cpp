#include "proxy/inspect/replay_plan.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <map>

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"

namespace imapscope::inspect {
namespace {

using json = nlohmann::json;

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  return hex(digest, length);
}

std::string words(const json& e, const char* key) {
  const auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool flag(const json& e, const char* key) {
  const auto it = e.find(key);
  return it != e.end() && it->is_boolean() && it->get<bool>();
}

std::uint64_t literal_size(const json& literal) {
  const auto it = literal.find("size");
  if (it == literal.end() || !it->is_number_integer() || it->get<std::int64_t>() < 0) return 0;
  return it->get<std::uint64_t>();
}

ResponseLine response_line(const json& e) {
  ResponseLine line{words(e, "text"), {}};
  if (const auto it = e.find("literals"); it != e.end() && it->is_array()) {
    for (const auto& l : *it) line.literals.push_back({literal_size(l), words(l, "sha256")});
  }
  return line;
}

// literal = "{" number64 ["+"] "}" (RFC 9051 §9; "~{" for literal8): the command
// text holds each line part without its CRLF, so literal k's header ends part k.
// Headers are looked for outside quoted strings, in order, with the recorded sizes.
std::optional<std::vector<std::string>> split_at_literals(std::string_view text, const json& literals) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  for (const auto& literal : literals) {
    const std::string digits = std::to_string(literal_size(literal));
    bool in_quote = false, found = false;
    for (std::size_t i = pos; i < text.size() && !found; ++i) {
      const char c = text[i];
      if (in_quote) {
        if (c == '\\') ++i;
        else if (c == '"') in_quote = false;
        continue;
      }
      if (c == '"') in_quote = true;
      if (c != '{' || text.compare(i + 1, digits.size(), digits) != 0) continue;
      std::size_t end = i + 1 + digits.size();
      if (end < text.size() && (text[end] == '+' || text[end] == '-')) ++end;
      if (end >= text.size() || text[end] != '}') continue;
      parts.emplace_back(text.substr(pos, end + 1 - pos));
      pos = end + 1;
      found = true;
    }
    if (!found) return std::nullopt;
  }
  parts.emplace_back(text.substr(pos));
  return parts;
}

// A message that mail stores accept (RFC 5322 wants Date and From), padded with
// lines of 'x' to the recorded size.
Piece made_up_message(std::uint64_t size) {
  static const std::string kFull =
      "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nFrom: imapscope replay <replay@imapscope.invalid>\r\n"
      "Subject: imapscope replay: made-up body of the recorded size\r\n\r\n";
  static const std::string kShort = "From: replay@imapscope.invalid\r\n\r\n";
  Piece p;
  if (size >= kFull.size()) p.bytes = kFull;
  else if (size >= kShort.size()) p.bytes = kShort;
  p.padding = size - p.bytes.size();
  p.padding_lines = true;
  return p;
}

// The payload of one recorded literal: the captured bytes when they are whole and
// match, else made up (and why, in `approximation`).
Piece payload(const json& literal, bool message, std::string& approximation) {
  const auto size = literal_size(literal);
  const std::string data = words(literal, "data");
  if (!data.empty() || size == 0) {
    if (flag(literal, "truncated")) {
      approximation = "only the first " + std::to_string(base64_decode(data).value_or("").size()) + " of " +
                      std::to_string(size) + " bytes were captured";
    } else if (const auto bytes = base64_decode(data); !bytes || bytes->size() != size) {
      approximation = "the captured payload doesn't have the recorded size";
    } else if (const auto sha = words(literal, "sha256"); !sha.empty() && sha != sha256_hex(*bytes)) {
      approximation = "the captured payload doesn't match its recorded SHA-256";
    } else {
      return Piece{*bytes};
    }
  } else {
    approximation = "payload not captured (body_cap_kb)";
  }
  approximation += "; " + std::to_string(size) + " bytes made up";
  if (message) return made_up_message(size);
  return Piece{{}, size, false};
}

// The writes of a recorded command: a synchronising literal waits for "+".
std::vector<Send> command_sends(const json& e, const std::string& command, ReplayStep& step) {
  const std::string text = words(e, "text");
  const json literals = e.contains("literals") && e["literals"].is_array() ? e["literals"] : json::array();
  const auto parts = split_at_literals(text, literals);
  if (!parts) {
    step.skipped = "its literal headers can't be found in the recorded text";
    return {};
  }
  if (text.find("\xEF\xBF\xBD") != std::string::npos) {
    step.approximations.push_back("bytes that weren't UTF-8 were recorded as U+FFFD and are sent as such");
  }
  std::vector<Send> sends(1);
  for (std::size_t k = 0; k < literals.size(); ++k) {
    const std::string& part = (*parts)[k];
    sends.back().pieces.push_back(Piece{part + "\r\n"});
    if (part[part.size() - 2] != '+' && part[part.size() - 2] != '-') {
      sends.back().await_continuation = true;
      sends.emplace_back();
    }
    // In APPEND every literal is a message but a mailbox name right after the verb.
    const auto brace = part.rfind('{');
    const bool mailbox = k == 0 && imap::ascii_upper(part.substr(0, brace)) == imap::ascii_upper(step.tag) + " APPEND ";
    std::string approximation;
    sends.back().pieces.push_back(payload(literals[k], command == "APPEND" && !mailbox, approximation));
    if (!approximation.empty()) {
      step.approximations.push_back("literal " + std::to_string(k + 1) + ": " + approximation);
    }
  }
  sends.back().pieces.push_back(Piece{parts->back() + "\r\n"});
  return sends;
}

std::vector<Send> login_sends(const std::string& tag, const PlanOptions& o) {
  std::vector<Send> sends;
  std::string line = tag + " LOGIN ";
  const std::string* values[] = {&o.user, &o.password};
  for (int i = 0; i < 2; ++i) {
    auto arg = astring(*values[i]);
    line += arg.text;
    if (arg.literal) {
      sends.push_back(Send{{Piece{line + "\r\n"}}, true, 0});
      line = std::move(*arg.literal);
    }
    line += i == 0 ? " " : "\r\n";
  }
  sends.push_back(Send{{Piece{line}}, false, 0});
  return sends;
}

std::string seconds(std::int64_t ms) {
  return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

}  // namespace

void padding_bytes(std::uint64_t total, bool lines, std::uint64_t offset, std::size_t n, std::string& out) {
  if (!lines) {
    out.append(n, 'x');
    return;
  }
  // 76 'x' and CRLF per line; the last line is shorter, or one longer rather than a
  // lone 'x', so that it ends in CRLF too.
  constexpr std::uint64_t kLine = 78;
  std::uint64_t tail_start = total / kLine * kLine, tail = total % kLine;
  if (tail == 1 && tail_start >= kLine) {
    tail_start -= kLine;
    tail += kLine;
  }
  for (std::uint64_t p = offset; p < offset + n; ++p) {
    const std::uint64_t at = p < tail_start ? p % kLine : p - tail_start;
    const std::uint64_t length = p < tail_start ? kLine : tail;
    char c = 'x';
    if (length >= 2 && at == length - 2) c = '\r';
    if (length >= 2 && at == length - 1) c = '\n';
    out.push_back(c);
  }
}

AstringArg astring(const std::string& value) {
  // quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = <any TEXT-CHAR except
  // quoted-specials> / "\" quoted-specials; TEXT-CHAR = <any CHAR except CR and LF>
  const bool quotable = std::all_of(value.begin(), value.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x01 && u <= 0x7f && c != '\r' && c != '\n';
  });
  if (!quotable) return {"{" + std::to_string(value.size()) + "}", value};
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return {out + "\"", std::nullopt};
}

namespace {

// Walks a session's events in order: client commands become steps, server lines
// their expectations, the proxy's own tagged answers take commands out.
class PlanBuilder {
 public:
  PlanBuilder(std::uint64_t session, const PlanOptions& options) : options_(options) { plan_.session = session; }

  void add(const json& e) {
    const std::string dir = words(e, "dir");
    const std::int64_t at = e.contains("t") && e["t"].is_number_integer() ? e["t"].get<std::int64_t>() : 0;
    if (dir == "C") on_client(e, at);
    if (dir == "S") on_server(e);
    if (dir == "P") on_proxy(words(e, "text"));
  }

  ReplayPlan finish() {
    for (std::size_t i = 0; i < plan_.steps.size(); ++i) {
      auto& step = plan_.steps[i];
      if (step.skipped.empty() && !step.answered) step.notes.push_back("the recording has no tagged answer to it");
      if (!step.login || !step.skipped.empty()) continue;
      if (step.answered && status_[i] != "OK") {
        step.skipped = "a failed login in the recording (" + status_[i] + ")";
      } else {
        step.sends = login_sends(step.tag, options_);
      }
    }
    if (idle_) {
      plan_.steps[*idle_].approximations.push_back("the recording ends in IDLE: DONE after " +
                                                   seconds(options_.max_wait_ms) + " (--max-wait-ms)");
    }
    return std::move(plan_);
  }

 private:
  void on_client(const json& e, std::int64_t at) {
    const std::string kind = words(e, "kind");
    if (kind == "sasl") return;  // part of the login, which is replaced
    if (kind == "done") return on_done(at);
    ReplayStep step;
    step.tag = words(e, "tag");
    step.command = words(e, "command");
    step.display = words(e, "text");
    if (step.tag.empty()) {
      step.skipped = "not a tagged command";
    } else if (flag(e, "rejected")) {
      step.skipped = "refused by the proxy (a limit); the server never saw it";
    } else if (step.command == "STARTTLS" || step.command == "COMPRESS") {
      step.skipped = "it changes the transport (--tls connects with TLS from the start)";
    } else if (step.command == "LOGIN" || step.command == "AUTHENTICATE") {
      step.login = true;  // its writes come in finish(), once its recorded result is known
      step.display = step.tag + " LOGIN " + astring(options_.user).text + " ***";
      if (step.command != "LOGIN") step.notes.push_back("replaces the recorded " + words(e, "text"));
    } else {
      step.sends = command_sends(e, step.command, step);
      if (step.command == "IDLE" && step.skipped.empty()) {
        step.sends.back().await_continuation = true;
        step.sends.push_back(Send{{Piece{"DONE\r\n"}}, false, options_.max_wait_ms});
        idle_ = plan_.steps.size();
        idle_at_ = at;
      }
    }
    if (step.skipped.empty()) {
      if (first_sent() != outstanding_.end()) plan_.pipelined = true;
      step.expected = std::move(unclaimed_);
      unclaimed_.clear();
    }
    if (!step.tag.empty()) outstanding_.push_back(plan_.steps.size());
    plan_.steps.push_back(std::move(step));
  }

  void on_done(std::int64_t at) {
    if (!idle_) return;
    auto& step = plan_.steps[*idle_];
    const std::int64_t idled_ms = std::max<std::int64_t>(0, (at - idle_at_) / 1000);
    step.sends.back().delay_ms = std::min(options_.max_wait_ms, idled_ms);
    if (idled_ms > options_.max_wait_ms) {
      step.approximations.push_back("IDLE shortened from " + seconds(idled_ms) + " to " +
                                    seconds(options_.max_wait_ms) + " (--max-wait-ms)");
    }
    idle_.reset();
  }

  void on_server(const json& e) {
    const std::string kind = words(e, "kind");
    if (plan_.steps.empty() && !plan_.greeting && kind == "untagged_status") {
      plan_.greeting = response_line(e);
      return;
    }
    if (kind == "continuation") return;
    auto line = response_line(e);
    if (kind == "tagged") {
      if (const auto it = find_outstanding(words(e, "tag")); it != outstanding_.end()) {
        plan_.steps[*it].expected.push_back(std::move(line));
        plan_.steps[*it].answered = true;
        status_[*it] = words(e, "status");
        outstanding_.erase(it);
        return;
      }
    }
    // Untagged lines belong to the oldest command in flight: servers work through
    // commands in order, and one at a time they come while it runs.
    if (const auto it = first_sent(); it != outstanding_.end()) {
      plan_.steps[*it].expected.push_back(std::move(line));
    } else {
      unclaimed_.push_back(std::move(line));
    }
  }

  // The proxy's own tagged answer: the command never reached the server. Other lines
  // (injected by rules, a BYE at shutdown) are not the server's either: ignored.
  void on_proxy(const std::string& text) {
    const auto space = std::min(text.find(' '), text.size());
    const std::string word =
        space < text.size() ? imap::ascii_upper(text.substr(space + 1, text.find(' ', space + 1) - space - 1)) : "";
    const auto it = find_outstanding(text.substr(0, space));
    if (it == outstanding_.end() || (word != "OK" && word != "NO" && word != "BAD")) {
      ++plan_.ignored_proxy_lines;
      return;
    }
    auto& step = plan_.steps[*it];
    if (step.skipped.empty()) step.skipped = "the proxy answered it itself (" + text + "); the server never saw it";
    step.sends.clear();
    if (idle_ == *it) idle_.reset();
    outstanding_.erase(it);
  }

  std::vector<std::size_t>::iterator find_outstanding(const std::string& tag) {
    return std::find_if(outstanding_.begin(), outstanding_.end(),
                        [&](std::size_t i) { return plan_.steps[i].tag == tag; });
  }
  std::vector<std::size_t>::iterator first_sent() {
    return std::find_if(outstanding_.begin(), outstanding_.end(),
                        [&](std::size_t i) { return plan_.steps[i].skipped.empty(); });
  }

  const PlanOptions& options_;
  ReplayPlan plan_;
  std::vector<std::size_t> outstanding_;  // steps waiting for their tagged answer, oldest first
  std::vector<ResponseLine> unclaimed_;   // untagged lines while no command was in flight
  std::map<std::size_t, std::string> status_;  // of the recorded tagged answers
  std::optional<std::size_t> idle_;       // the IDLE waiting for its DONE
  std::int64_t idle_at_ = 0;
};

}  // namespace

ReplayPlan build_replay_plan(std::uint64_t session, const std::vector<json>& events, const PlanOptions& options) {
  PlanBuilder builder(session, options);
  for (const auto& e : events) builder.add(e);
  return builder.finish();
}

// --- normalisation and comparison ---

namespace {

// Dovecot's " (0.001 + 0.000 + 0.000 secs)" before the final "." of a tagged text.
void strip_timing(std::string& text) {
  const auto end = text.rfind(" secs)");
  if (end == std::string::npos) return;
  const auto open = text.rfind(" (", end);
  if (open == std::string::npos) return;
  const auto inside = std::string_view(text).substr(open + 2, end - open - 2);
  const bool numbers = !inside.empty() && inside.find('+') != std::string_view::npos &&
                       std::all_of(inside.begin(), inside.end(), [](char c) {
                         return imap::is_digit(c) || c == '.' || c == ' ' || c == '+';
                       });
  if (numbers) text.erase(open, end + 6 - open);
}

// The number after each of `words` ("UIDVALIDITY ", "[APPENDUID "...) becomes a mark.
void mask_uidvalidity(std::string& text) {
  for (const std::string_view word : {"UIDVALIDITY ", "[APPENDUID ", "[COPYUID "}) {
    for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
      const auto begin = at + word.size();
      auto end = begin;
      while (end < text.size() && imap::is_digit(text[end])) ++end;
      if (end > begin) text.replace(begin, end - begin, "<uidvalidity>");
    }
  }
}

}  // namespace

ResponseLine normalise(ResponseLine line) {
  std::string& t = line.text;
  if (std::any_of(t.begin(), t.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
    // As the transcript writer does it, so both sides read the same.
    t = json::parse(json(t).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  }
  const bool tagged = !t.empty() && t[0] != '*' && t[0] != '+';
  if (tagged) strip_timing(t);
  // Message data ("* 3 FETCH", "* 3 EXISTS") carries no UIDVALIDITY but may quote anything.
  const bool message_data = t.size() > 2 && t[0] == '*' && imap::is_digit(t[2]);
  if (!message_data) mask_uidvalidity(t);
  return line;
}

bool same_line(const ResponseLine& expected, const ResponseLine& got) {
  if (expected.text != got.text || expected.literals.size() != got.literals.size()) return false;
  for (std::size_t i = 0; i < expected.literals.size(); ++i) {
    const auto& a = expected.literals[i];
    const auto& b = got.literals[i];
    if (a.size != b.size || (!a.sha256.empty() && !b.sha256.empty() && a.sha256 != b.sha256)) return false;
  }
  return true;
}

std::string render_line(const ResponseLine& line) {
  std::string out = line.text;
  for (const auto& l : line.literals) {
    out += "  [literal " + std::to_string(l.size) + " B";
    if (!l.sha256.empty()) out += " sha256:" + l.sha256.substr(0, 12);
    out += "]";
  }
  return out;
}

Comparison compare_responses(const std::vector<ResponseLine>& expected, const std::vector<ResponseLine>& got) {
  Comparison c;
  std::size_t head = 0, tail = 0;
  while (head < expected.size() && head < got.size() && same_line(expected[head], got[head])) ++head;
  while (tail < expected.size() - head && tail < got.size() - head &&
         same_line(expected[expected.size() - 1 - tail], got[got.size() - 1 - tail])) {
    ++tail;
  }
  for (std::size_t i = 0; i < head; ++i) c.lines.push_back({' ', render_line(got[i])});
  const std::size_t n = expected.size() - head - tail, m = got.size() - head - tail;
  c.same = n == 0 && m == 0;
  // Longest common subsequence of the middle; a middle too big for the table is
  // listed as all removed, then all added.
  constexpr std::size_t kMaxCells = 2'000'000;
  std::vector<std::uint32_t> lcs;
  const bool table = n > 0 && m > 0 && (n + 1) * (m + 1) <= kMaxCells;
  if (table) {
    lcs.assign((n + 1) * (m + 1), 0);
    auto at = [&](std::size_t i, std::size_t j) -> std::uint32_t& { return lcs[i * (m + 1) + j]; };
    for (std::size_t i = n; i-- > 0;) {
      for (std::size_t j = m; j-- > 0;) {
        at(i, j) = same_line(expected[head + i], got[head + j]) ? at(i + 1, j + 1) + 1
                                                                : std::max(at(i + 1, j), at(i, j + 1));
      }
    }
    std::size_t i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && same_line(expected[head + i], got[head + j])) {
        c.lines.push_back({' ', render_line(got[head + j])});
        ++i, ++j;
      } else if (j == m || (i < n && at(i + 1, j) >= at(i, j + 1))) {
        c.lines.push_back({'-', render_line(expected[head + i++])});
      } else {
        c.lines.push_back({'+', render_line(got[head + j++])});
      }
    }
  } else {
    for (std::size_t i = 0; i < n; ++i) c.lines.push_back({'-', render_line(expected[head + i])});
    for (std::size_t j = 0; j < m; ++j) c.lines.push_back({'+', render_line(got[head + j])});
  }
  for (std::size_t k = got.size() - tail; k < got.size(); ++k) c.lines.push_back({' ', render_line(got[k])});
  return c;
}

std::vector<std::string> diff_listing(const Comparison& c, std::size_t context, std::size_t max_lines) {
  std::vector<bool> shown(c.lines.size(), false);
  for (std::size_t i = 0; i < c.lines.size(); ++i) {
    if (c.lines[i].op == ' ') continue;
    const std::size_t from = i > context ? i - context : 0;
    for (std::size_t k = from; k < c.lines.size() && k <= i + context; ++k) shown[k] = true;
  }
  std::vector<std::string> out;
  bool gap = false;
  for (std::size_t i = 0; i < c.lines.size(); ++i) {
    if (!shown[i]) {
      gap = true;
      continue;
    }
    if (out.size() >= max_lines) {
      const auto rest = std::count(shown.begin() + static_cast<std::ptrdiff_t>(i), shown.end(), true);
      out.push_back("  ... (" + std::to_string(rest) + " more lines)");
      break;
    }
    if (gap) out.push_back("  ...");
    gap = false;
    out.push_back(std::string(1, c.lines[i].op) + " " + c.lines[i].text);
  }
  return out;
}

}  // namespace imapscope::inspect
