// Rule files -> typed rules. Every check that can be made here is made here, so a
// rule that loads can always be applied without breaking the IMAP stream.
#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "proxy/imap/abnf.hpp"
#include "proxy/policy/rule_set.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::policy {
namespace {

using util::InputError;
using util::JsonReader;
using json = nlohmann::json;

constexpr auto kMaxDelay = std::chrono::milliseconds(60'000);

// Rule fields are lists where an empty one would be a mistake: leaving the field
// out is how a rule says "any".
std::vector<std::string> strings(JsonReader& r, const std::string& key) {
  auto out = r.strings(key);
  if (r.has(key) && out.empty()) r.fail(key, "is empty: leave it out to match anything");
  return out;
}

template <typename T>
T pick(JsonReader& r, const std::string& key, std::size_t index, const std::string& value,
       const std::vector<std::pair<std::string, T>>& allowed) {
  for (const auto& [name, v] : allowed) {
    if (name == value) return v;
  }
  std::string names;
  for (const auto& [name, v] : allowed) names += (names.empty() ? "" : ", ") + name;
  r.fail(key + "/" + std::to_string(index), "\"" + value + "\" is not one of " + names);
}

template <typename T>
std::uint8_t bits(JsonReader& r, const std::string& key, const std::vector<std::pair<std::string, T>>& allowed) {
  std::uint8_t out = 0;
  const auto values = strings(r, key);
  for (std::size_t i = 0; i < values.size(); ++i) out |= bit(pick(r, key, i, values[i], allowed));
  return out;
}

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos || s.find('\0') != std::string_view::npos; }

std::unique_ptr<re2::RE2> regex(JsonReader& r, const std::string& key, const std::string& pattern, bool ignore_case) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_case_sensitive(!ignore_case);
  auto re = std::make_unique<re2::RE2>(pattern, options);
  if (!re->ok()) r.fail(key, "is not a valid regular expression (RE2 syntax): " + re->error());
  return re;
}

std::vector<Replacement> replacements(JsonReader& r, const std::string& key) {
  std::vector<Replacement> out;
  const auto& list = r.array(key);
  if (list.empty()) r.fail(key, "is empty");
  for (std::size_t i = 0; i < list.size(); ++i) {
    JsonReader item(list[i], r.file(), r.pointer() + "/" + key + "/" + std::to_string(i));
    Replacement rep;
    if (!item.has("pattern")) item.fail("pattern", "is required");
    rep.pattern = regex(item, "pattern", item.string("pattern", ""), item.boolean("ignore_case", false));
    if (!item.has("with")) item.fail("with", "is required (\"\" deletes the match)");
    rep.with = item.string("with", "");
    std::string why;
    if (!rep.pattern->CheckRewriteString(rep.with, &why)) item.fail("with", why);
    if (has_line_break(rep.with)) item.fail("with", "must not contain CR, LF or NUL: a rule never adds lines");
    item.reject_unknown();
    out.push_back(std::move(rep));
  }
  return out;
}

std::vector<std::string> untagged_lines(JsonReader& r, const std::string& key) {
  auto lines = strings(r, key);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("* ", 0) != 0 || lines[i].size() < 3) {
      r.fail(key + "/" + std::to_string(i), "must be an untagged response: \"* ...\"");
    }
    if (has_line_break(lines[i])) r.fail(key + "/" + std::to_string(i), "must not contain CR, LF or NUL (CRLF is added)");
    if (!lines[i].empty() && lines[i].back() == '}') {
      r.fail(key + "/" + std::to_string(i), "must not end with a literal header");
    }
  }
  return lines;
}

std::string atom(JsonReader& r, const std::string& key) {
  auto value = imap::ascii_upper(r.string(key, ""));
  if (value.empty()) r.fail(key, "is required");
  for (char c : value) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      r.fail(key, "must be an IMAP atom (letters, digits, - _ .)");
    }
  }
  return value;
}

std::vector<std::string> upper(std::vector<std::string> values) {
  for (auto& v : values) v = imap::ascii_upper(v);
  return values;
}

// "identified_by" / "min_confidence": how sure the identification must be for a rule
// that names client families.
void read_certainty(JsonReader& r, Match& m) {
  const bool by = r.has("identified_by");
  const bool confidence = r.has("min_confidence");
  if (!by && !confidence) return;
  const char* key = by ? "identified_by" : "min_confidence";
  if (m.families.empty()) r.fail(key, "needs \"client\": a rule for every client doesn't depend on identification");
  m.id_only = r.choice("identified_by", "heuristic", {"id", "heuristic"}) == "id";
  if (m.id_only && confidence) r.fail("min_confidence", "applies to \"identified_by\": \"heuristic\" (ID is always sure)");
  m.min_confidence = r.real("min_confidence", kDefaultRuleMinConfidence, 0.01, 0.99);
  if (m.id_only) {
    if (std::find(m.families.begin(), m.families.end(), identify::kUnknownFamily) != m.families.end()) {
      r.fail("identified_by", "\"id\" can't go with client \"unknown\" (an unknown client has sent no ID)");
    }
    if (m.methods != 0 && !(m.methods & bit(identify::IdMethod::Id))) {
      r.fail("identified_by", "\"id\" contradicts \"method\", which leaves out \"id\"");
    }
  }
}

Match read_match(JsonReader r, const std::vector<std::string>& families) {
  Match m;
  if (!r.has("direction")) r.fail("direction", "is required: \"client\" (commands) or \"server\" (responses)");
  m.direction = r.choice("direction", "", {"client", "server"}) == "client" ? Direction::Client : Direction::Server;
  m.families = strings(r, "client");
  for (std::size_t i = 0; i < m.families.size(); ++i) {
    if (std::find(families.begin(), families.end(), m.families[i]) == families.end()) {
      r.fail("client/" + std::to_string(i), "\"" + m.families[i] + "\" is not a client family of the signatures");
    }
  }
  if (r.has("version")) {
    auto v = r.object("version");
    for (const char* bound : {"min", "max"}) {
      if (!v.has(bound)) continue;
      auto parsed = parse_version(v.string(bound, ""));
      if (!parsed) v.fail(bound, "must be a version such as \"115.3\"");
      (std::string(bound) == "min" ? m.version_min : m.version_max) = std::move(parsed);
    }
    if (!m.version_min && !m.version_max) r.fail("version", "needs \"min\" and/or \"max\"");
    v.reject_unknown();
  }
  m.methods = bits<identify::IdMethod>(
      r, "method", {{"id", identify::IdMethod::Id}, {"heuristic", identify::IdMethod::Heuristic},
                    {"unknown", identify::IdMethod::Unknown}});
  read_certainty(r, m);
  m.phases = bits<Phase>(r, "state", {{"not_authenticated", Phase::NotAuthenticated},
                                      {"authenticated", Phase::Authenticated},
                                      {"selected", Phase::Selected},
                                      {"idle", Phase::Idle}});
  m.kinds = bits<MessageKind>(r, "kind", {{"command", MessageKind::Command},
                                          {"untagged_status", MessageKind::UntaggedStatus},
                                          {"data", MessageKind::Data},
                                          {"tagged", MessageKind::Tagged},
                                          {"continuation", MessageKind::Continuation}});
  m.commands = upper(strings(r, "command"));
  m.names = upper(strings(r, "name"));
  const auto statuses = strings(r, "status");
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    m.statuses.push_back(pick<imap::Status>(r, "status", i, imap::ascii_upper(statuses[i]),
                                            {{"OK", imap::Status::Ok}, {"NO", imap::Status::No},
                                             {"BAD", imap::Status::Bad}, {"BYE", imap::Status::Bye},
                                             {"PREAUTH", imap::Status::Preauth}}));
  }
  m.codes = upper(strings(r, "code"));
  if (r.has("text")) m.text = regex(r, "text", r.string("text", ""), r.boolean("ignore_case", false));
  if (r.has("ignore_case") && !m.text) r.fail("ignore_case", "applies to \"text\", which is missing");

  if (m.direction == Direction::Client) {
    if (m.kinds & ~bit(MessageKind::Command)) r.fail("kind", "a client rule matches commands only");
    if (!m.names.empty() || !m.statuses.empty() || !m.codes.empty()) {
      r.fail(!m.names.empty() ? "name" : !m.statuses.empty() ? "status" : "code", "applies to server responses only");
    }
  } else if (m.kinds & bit(MessageKind::Command)) {
    r.fail("kind", "\"command\" needs \"direction\": \"client\"");
  }
  r.reject_unknown();
  return m;
}

Actions read_actions(JsonReader r, const Match& match) {
  Actions a;
  const bool client = match.direction == Direction::Client;
  auto only = [&](const char* key, bool allowed, const char* why) {
    if (r.has(key) && !allowed) r.fail(key, why);
  };
  only("drop", !client, "applies to server responses: a dropped command would leave its tag unanswered");
  only("capabilities", !client, "applies to server responses (CAPABILITY data and [CAPABILITY] codes)");
  only("answer", client, "applies to client commands");
  only("rewrite_command", client, "applies to client commands");
  only("thin_keepalives_s", !client, "applies to server responses (keepalive lines)");

  a.drop = r.boolean("drop", false);
  if (a.drop) {
    const std::uint8_t untagged = bit(MessageKind::UntaggedStatus) | bit(MessageKind::Data);
    if (match.kinds == 0 || (match.kinds & ~untagged)) {
      r.fail("drop", "needs match.kind limited to \"untagged_status\"/\"data\": a dropped tagged response or "
                     "continuation would leave the client waiting");
    }
    if ((match.kinds & bit(MessageKind::UntaggedStatus)) &&
        std::any_of(match.statuses.begin(), match.statuses.end(),
                    [](imap::Status s) { return s == imap::Status::Bye || s == imap::Status::Preauth; })) {
      r.fail("drop", "must not drop BYE or PREAUTH: the client would not know the session state");
    }
  }
  if (r.has("replace")) a.replace = replacements(r, "replace");
  if (r.has("capabilities")) {
    auto c = r.object("capabilities");
    a.hide_capabilities = upper(strings(c, "hide"));
    a.add_capabilities = upper(strings(c, "add"));
    for (const auto& cap : a.add_capabilities) {
      if (cap.find_first_of(" ()[]{}\"*%\\") != std::string::npos) c.fail("add", "\"" + cap + "\" is not a capability atom");
    }
    if (a.hide_capabilities.empty() && a.add_capabilities.empty()) r.fail("capabilities", "needs \"hide\" and/or \"add\"");
    c.reject_unknown();
  }
  if (r.has("answer")) {
    auto c = r.object("answer");
    Answer answer;
    const auto status = c.choice("status", "", {"OK", "NO", "BAD"});
    if (!c.has("status")) c.fail("status", "is required: OK, NO or BAD");
    answer.status = status == "OK" ? imap::Status::Ok : status == "NO" ? imap::Status::No : imap::Status::Bad;
    answer.text = c.string("text", "");
    if (answer.text.empty()) c.fail("text", "is required (the human-readable text after the status)");
    if (has_line_break(answer.text)) c.fail("text", "must not contain CR, LF or NUL");
    answer.untagged = untagged_lines(c, "untagged");
    c.reject_unknown();
    a.answer = std::move(answer);
  }
  if (r.has("rewrite_command")) {
    auto c = r.object("rewrite_command");
    CommandRewrite rw;
    rw.to = atom(c, "to");
    rw.append = c.string("append", "");
    if (has_line_break(rw.append) || (!rw.append.empty() && rw.append.back() == '}')) {
      c.fail("append", "must not contain CR, LF, NUL or end with a literal header");
    }
    if (c.has("responses")) {
      auto resp = c.object("responses");
      rw.response_from = atom(resp, "from");
      rw.response_to = atom(resp, "to");
      if (resp.has("replace")) rw.response_replace = replacements(resp, "replace");
      resp.reject_unknown();
    }
    c.reject_unknown();
    a.rewrite = std::move(rw);
  }
  if (r.has("inject")) {
    auto c = r.object("inject");
    a.inject_before = untagged_lines(c, "before");
    a.inject_after = untagged_lines(c, "after");
    if (a.inject_before.empty() && a.inject_after.empty()) r.fail("inject", "needs \"before\" and/or \"after\"");
    c.reject_unknown();
  }
  if (r.has("delay_ms")) {
    a.delay = std::chrono::milliseconds(r.number("delay_ms", 0, 1, static_cast<std::uint64_t>(kMaxDelay.count())));
  }
  if (r.has("thin_keepalives_s")) {
    a.thin_keepalives = std::chrono::seconds(r.number("thin_keepalives_s", 0, 1, 86'400));
    // Only untagged status lines may go missing (like drop): a keepalive is one.
    if (match.kinds != bit(MessageKind::UntaggedStatus)) {
      r.fail("thin_keepalives_s", "needs match.kind [\"untagged_status\"]: only keepalive lines may be left out");
    }
    if (a.drop) r.fail("thin_keepalives_s", "can't go with drop (which leaves out every line)");
  }
  if (a.answer && (a.rewrite || !a.replace.empty() || a.delay.count() > 0)) {
    r.fail("answer", "a command answered here is not forwarded: it can't also be rewritten or delayed");
  }
  const bool any = a.drop || !a.replace.empty() || !a.hide_capabilities.empty() || !a.add_capabilities.empty() ||
                   a.answer || a.rewrite || !a.inject_before.empty() || !a.inject_after.empty() || a.delay.count() > 0 ||
                   a.thin_keepalives.count() > 0;
  if (!any) r.fail("", "does nothing: \"actions\" needs at least one action");
  if (a.drop && (!a.replace.empty() || !a.inject_after.empty())) {
    r.fail("drop", "a dropped response can't also be rewritten or followed by injected lines (use inject.before)");
  }
  r.reject_unknown();
  return a;
}

Rule read_rule(JsonReader r, const std::vector<std::string>& families, bool& enabled) {
  Rule rule;
  enabled = r.boolean("enabled", true);
  rule.file = r.file();
  rule.name = r.string("name", "");
  if (rule.name.empty() || rule.name.size() > 64) r.fail("name", "is required (1-64 characters)");
  for (char c : rule.name) {
    if (!(c >= 'a' && c <= 'z') && !imap::is_digit(c) && c != '-' && c != '_' && c != '.') {
      r.fail("name", "may only use a-z, 0-9, '-', '_' and '.' (it is a metric label)");
    }
  }
  rule.description = r.string("description", "");
  if (rule.description.empty()) r.fail("description", "is required: which client behaviour the rule fixes");
  (void)r.string("source", "");  // where the behaviour is documented: for people
  rule.match = read_match(r.object("match"), families);
  rule.actions = read_actions(r.object("actions"), rule.match);
  r.reject_unknown();
  return rule;
}

}  // namespace

std::vector<Rule> parse_rules(const json& document, const std::vector<std::string>& families, const std::string& file) {
  JsonReader top(document, file, "");
  if (!document.is_object()) top.fail("", "must be an object with a \"rules\" array");
  (void)top.string("$schema", "");
  (void)top.string("description", "");
  const auto& list = top.array("rules");
  std::vector<Rule> rules;
  for (std::size_t i = 0; i < list.size(); ++i) {
    bool enabled = true;
    Rule rule = read_rule(JsonReader(list[i], file, "/rules/" + std::to_string(i)), families, enabled);
    if (enabled) rules.push_back(std::move(rule));
  }
  top.reject_unknown();
  return rules;
}

RuleSet load_rules(const std::string& path, const std::vector<std::string>& families) {
  namespace fs = std::filesystem;
  RuleSet set;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".json" && entry.is_regular_file()) set.files.push_back(entry.path().string());
    }
    if (ec) throw InputError(path + ": " + ec.message());
    std::sort(set.files.begin(), set.files.end());
  } else {
    set.files.push_back(path);
  }
  std::map<std::string, std::string> seen;  // rule name -> file
  for (const auto& file : set.files) {
    for (auto& rule : parse_rules(util::load_json_file(file), families, file)) {
      const auto [it, fresh] = seen.emplace(rule.name, file);
      if (!fresh) throw InputError(file + ": rule \"" + rule.name + "\": the name is used already in " + it->second);
      set.rules.push_back(std::move(rule));
    }
  }
  return set;
}

}  // namespace imapscope::policy
