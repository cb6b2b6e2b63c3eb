// Event lines written by hand, not through a JSON document: every message of every
// session becomes one (the live view is on by default), and building and dumping a
// nlohmann::json per message cost ten times the session's own work. Strings go
// through util::append_json_string, so a line always parses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace imapscope::inspect {

class JsonLine {
 public:
  // Distinct names: a string literal would otherwise pick a bool overload.
  JsonLine& str(std::string_view key, std::string_view value);
  JsonLine& num(std::string_view key, std::uint64_t value);
  JsonLine& real(std::string_view key, double value);
  JsonLine& flag(std::string_view key, bool value);
  JsonLine& raw(std::string_view key, std::string_view json);  // an already valid JSON value
  // {"t":time,"s":session,<fields>}
  std::string finish(std::int64_t time_us, std::uint64_t session) const;

 private:
  void key(std::string_view name);
  std::string fields_;
};

}  // namespace imapscope::inspect
