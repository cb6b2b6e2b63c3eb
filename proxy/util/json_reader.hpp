// Typed reading of JSON files that people write (config, rule files, client
// signatures): every error names the file, the place (a JSON pointer, or line and
// column for a syntax error) and the reason, and unknown keys are refused (a typo
// must not silently fall back to a default).
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace imapscope::util {

// Bad input from a file or a flag; what() says where and why.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses a whole file; throws InputError("FILE: line L, column C: reason").
nlohmann::json load_json_file(const std::string& path);

class JsonReader {
 public:
  using json = nlohmann::json;
  JsonReader(const json& value, std::string file, std::string pointer);

  [[noreturn]] void fail(const std::string& key, const std::string& reason) const;
  bool has(const std::string& key);
  std::string string(const std::string& key, const std::string& fallback);
  bool boolean(const std::string& key, bool fallback);
  std::uint64_t number(const std::string& key, std::uint64_t fallback, std::uint64_t min, std::uint64_t max);
  double real(const std::string& key, double fallback, double min, double max);
  std::string choice(const std::string& key, const std::string& fallback, const std::set<std::string>& allowed);
  JsonReader object(const std::string& key);
  const json& array(const std::string& key);  // required
  // A list of non-empty strings; empty when the key is missing.
  std::vector<std::string> strings(const std::string& key);
  std::string path(const std::string& key) const;  // "FILE: /pointer/key"
  const std::string& file() const { return file_; }
  const std::string& pointer() const { return pointer_; }
  const json& value() const { return value_; }
  void reject_unknown() const;

 private:
  const json& value_;
  std::string file_;
  std::string pointer_;
  std::set<std::string> known_;
};

}  // namespace imapscope::util
