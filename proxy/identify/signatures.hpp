// Client signatures: the data identification works from, loaded from a JSON file
// (rules/clients.json ships with imapscope and is built in; --clients FILE replaces
// it), so a client is added without a rebuild. See rules/README.md for the format.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace imapscope::identify {

// Matches the fields of an ID command; the first signature that matches wins.
struct IdSignature {
  std::string family;
  std::vector<std::pair<std::string, std::regex>> fields;  // lower-case field name -> pattern (all must match)
  std::string version_field = "version";
  std::optional<std::regex> version_pattern;  // its first group is the version
};

enum class CommandCase : std::uint8_t { Any, Lower, Upper };
// Which run of digits in a tag counts: the last ("a0001", "99.1") or the first
// (Apple Mail's "1.854", "2.854": the counter leads, the connection number trails).
enum class CounterPosition : std::uint8_t { Last, First };

// Recognises a client without ID by how it talks. Features left out don't count;
// a feature given that the commands contradict rules the signature out.
struct HeuristicSignature {
  std::string family;
  std::regex tag;                              // every tag must match
  CounterPosition counter_position = CounterPosition::Last;
  std::optional<std::uint64_t> counter_start;  // the first tag's counter
  std::optional<std::uint64_t> counter_step;   // between consecutive tags
  std::vector<std::string> opening;            // the first command names, upper case
  // Lower: some command name is written in lower case; Upper: all are upper case.
  CommandCase command_case = CommandCase::Any;
  double confidence = 0.5;                      // when every feature given matches
};

struct Signatures {
  std::vector<std::string> families;  // declared families, plus "other" and "unknown"
  std::vector<IdSignature> id;
  std::vector<HeuristicSignature> heuristics;
  double min_confidence = 0.2;    // below it a guess stays "unknown"
  std::size_t observe_commands = 6;  // heuristics look at this many commands
};

// Throws util::InputError naming the file, the JSON pointer and the reason.
Signatures parse_signatures(const nlohmann::json& document, const std::string& file);
Signatures load_signatures(const std::string& path);
// The rules/clients.json built into the binary.
const Signatures& builtin_signatures();

}  // namespace imapscope::identify
