#include "proxy/identify/signatures.hpp"

#include <algorithm>

#include "proxy/identify/client_info.hpp"
#include "proxy/imap/abnf.hpp"
#include "proxy/util/json_reader.hpp"

namespace imapscope::identify {
namespace {

using util::InputError;
using util::JsonReader;

std::regex compile(JsonReader& r, const std::string& key, const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
  } catch (const std::regex_error& e) {
    r.fail(key, "is not a valid regular expression: " + std::string(e.what()));
  }
}

void check_family(JsonReader& r, const std::string& family, const std::vector<std::string>& families) {
  if (family.empty()) r.fail("family", "is required");
  if (std::find(families.begin(), families.end(), family) == families.end()) {
    r.fail("family", "\"" + family + "\" is not declared in /families");
  }
}

IdSignature read_id(JsonReader r, const std::vector<std::string>& families) {
  IdSignature s;
  s.family = r.string("family", "");
  check_family(r, s.family, families);
  (void)r.string("source", "");  // where the fact comes from: for people, not for matching
  (void)r.string("comment", "");
  auto match = r.object("match");
  for (const auto& [field, pattern] : match.value().items()) {
    if (!pattern.is_string()) match.fail(field, "must be a regular expression string");
    (void)match.has(field);
    s.fields.emplace_back(imap::ascii_lower(field), compile(match, field, pattern.get<std::string>()));
  }
  if (s.fields.empty()) r.fail("match", "needs at least one ID field");
  s.version_field = imap::ascii_lower(r.string("version_field", "version"));
  if (r.has("version_pattern")) {
    const auto pattern = r.string("version_pattern", "");
    s.version_pattern = compile(r, "version_pattern", pattern);
    if (s.version_pattern->mark_count() < 1) r.fail("version_pattern", "needs a group: (...) is the version");
  }
  r.reject_unknown();
  return s;
}

HeuristicSignature read_heuristic(JsonReader r, const std::vector<std::string>& families) {
  HeuristicSignature s;
  s.family = r.string("family", "");
  check_family(r, s.family, families);
  (void)r.string("source", "");
  (void)r.string("comment", "");
  if (!r.has("tag")) r.fail("tag", "is required (a regular expression every tag matches)");
  s.tag = compile(r, "tag", r.string("tag", ""));
  s.counter_position = r.choice("counter_position", "last", {"last", "first"}) == "first" ? CounterPosition::First
                                                                                       : CounterPosition::Last;
  if (r.has("counter_start")) s.counter_start = r.number("counter_start", 0, 0, UINT32_MAX);
  if (r.has("counter_step")) s.counter_step = r.number("counter_step", 1, 1, 1000);
  if (r.has("opening")) {
    const auto& opening = r.array("opening");
    for (std::size_t i = 0; i < opening.size(); ++i) {
      if (!opening[i].is_string()) r.fail("opening/" + std::to_string(i), "must be a command name");
      s.opening.push_back(imap::ascii_upper(opening[i].get<std::string>()));
    }
  }
  const auto command_case = r.choice("command_case", "any", {"any", "lower", "upper"});
  s.command_case = command_case == "lower" ? CommandCase::Lower
                   : command_case == "upper" ? CommandCase::Upper
                                             : CommandCase::Any;
  s.confidence = r.real("confidence", 0.5, 0.01, 0.99);
  r.reject_unknown();
  return s;
}

}  // namespace

Signatures parse_signatures(const nlohmann::json& document, const std::string& file) {
  Signatures out;
  JsonReader root(document, file, "");
  (void)root.string("$schema", "");
  (void)root.string("comment", "");
  auto families = root.object("families");
  for (const auto& [name, label] : families.value().items()) {
    (void)families.has(name);
    if (!label.is_string()) families.fail(name, "must be the family's display name");
    if (name.empty() || name.size() > 40 ||
        !std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; })) {
      families.fail(name, "a family name is 1-40 characters of a-z, 0-9 and _ (it becomes a metric label)");
    }
    if (name == kOtherFamily || name == kUnknownFamily) families.fail(name, "is reserved");
    out.families.push_back(name);
  }
  if (out.families.size() > 100) root.fail("families", "at most 100 (each is a metric label value)");
  out.families.emplace_back(kOtherFamily);
  out.families.emplace_back(kUnknownFamily);
  out.min_confidence = root.real("min_confidence", out.min_confidence, 0.0, 1.0);
  out.observe_commands = root.number("observe_commands", out.observe_commands, 1, 50);
  const auto& id = root.array("id");
  for (std::size_t i = 0; i < id.size(); ++i) {
    out.id.push_back(read_id(JsonReader(id[i], file, "/id/" + std::to_string(i)), out.families));
  }
  const auto& heuristics = root.array("heuristics");
  for (std::size_t i = 0; i < heuristics.size(); ++i) {
    out.heuristics.push_back(
        read_heuristic(JsonReader(heuristics[i], file, "/heuristics/" + std::to_string(i)), out.families));
  }
  root.reject_unknown();
  return out;
}

Signatures load_signatures(const std::string& path) { return parse_signatures(util::load_json_file(path), path); }

}  // namespace imapscope::identify
