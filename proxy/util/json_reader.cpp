#include "proxy/util/json_reader.hpp"

#include <fstream>
#include <sstream>

namespace imapscope::util {

using nlohmann::json;

json load_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot be read");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based and points just past the offending character.
    const std::size_t at = e.byte == 0 ? 0 : std::min<std::size_t>(e.byte - 1, text.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < at; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string reason = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 5: syntax error ..."
    if (const auto colon = reason.find(": "); colon != std::string::npos) reason = reason.substr(colon + 2);
    throw InputError(path + ": line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + reason);
  }
}

JsonReader::JsonReader(const json& value, std::string file, std::string pointer)
    : value_(value), file_(std::move(file)), pointer_(std::move(pointer)) {
  if (!value_.is_object()) fail("", "must be an object");
}

void JsonReader::fail(const std::string& key, const std::string& reason) const {
  const std::string where = pointer_ + (key.empty() ? "" : "/" + key);
  throw InputError(file_ + ": " + (where.empty() ? "/" : where) + ": " + reason);
}

bool JsonReader::has(const std::string& key) {
  known_.insert(key);
  return value_.contains(key);
}

std::string JsonReader::string(const std::string& key, const std::string& fallback) {
  if (!has(key)) return fallback;
  if (!value_[key].is_string()) fail(key, "must be a string");
  return value_[key].get<std::string>();
}

bool JsonReader::boolean(const std::string& key, bool fallback) {
  if (!has(key)) return fallback;
  if (!value_[key].is_boolean()) fail(key, "must be true or false");
  return value_[key].get<bool>();
}

std::uint64_t JsonReader::number(const std::string& key, std::uint64_t fallback, std::uint64_t min, std::uint64_t max) {
  if (!has(key)) return fallback;
  const auto& v = value_[key];
  if (!v.is_number_unsigned() || v.get<std::uint64_t>() < min || v.get<std::uint64_t>() > max) {
    fail(key, "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return v.get<std::uint64_t>();
}

double JsonReader::real(const std::string& key, double fallback, double min, double max) {
  if (!has(key)) return fallback;
  const auto& v = value_[key];
  if (!v.is_number() || v.get<double>() < min || v.get<double>() > max) {
    fail(key, "must be a number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return v.get<double>();
}

std::string JsonReader::choice(const std::string& key, const std::string& fallback,
                               const std::set<std::string>& allowed) {
  auto v = string(key, fallback);
  if (!allowed.count(v)) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(key, "must be one of " + list + " (not \"" + v + "\")");
  }
  return v;
}

JsonReader JsonReader::object(const std::string& key) {
  known_.insert(key);
  static const json kEmpty = json::object();
  return JsonReader(value_.contains(key) ? value_[key] : kEmpty, file_, pointer_ + "/" + key);
}

const json& JsonReader::array(const std::string& key) {
  known_.insert(key);
  if (!value_.contains(key) || !value_[key].is_array()) fail(key, "must be a list");
  return value_[key];
}

std::vector<std::string> JsonReader::strings(const std::string& key) {
  std::vector<std::string> out;
  if (!has(key)) return out;
  const auto& list = array(key);
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (!list[i].is_string() || list[i].get<std::string>().empty()) {
      fail(key + "/" + std::to_string(i), "must be a non-empty string");
    }
    out.push_back(list[i].get<std::string>());
  }
  return out;
}

std::string JsonReader::path(const std::string& key) const { return file_ + ": " + pointer_ + "/" + key; }

void JsonReader::reject_unknown() const {
  for (const auto& [key, unused] : value_.items()) {
    if (!known_.count(key)) fail(key, "unknown setting");
  }
}

}  // namespace imapscope::util
