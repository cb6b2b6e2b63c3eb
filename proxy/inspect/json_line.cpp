#include "proxy/inspect/json_line.hpp"

#include <charconv>

#include "proxy/util/text.hpp"

namespace imapscope::inspect {

using util::append_json_string;

void JsonLine::key(std::string_view name) {
  fields_ += ',';
  append_json_string(fields_, name);
  fields_ += ':';
}

JsonLine& JsonLine::str(std::string_view k, std::string_view value) {
  key(k);
  append_json_string(fields_, value);
  return *this;
}

JsonLine& JsonLine::num(std::string_view k, std::uint64_t value) {
  key(k);
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  fields_.append(digits, end);
  return *this;
}

JsonLine& JsonLine::real(std::string_view k, double value) {
  key(k);
  char digits[32];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  fields_.append(digits, end);
  return *this;
}

JsonLine& JsonLine::flag(std::string_view k, bool value) {
  key(k);
  fields_ += value ? "true" : "false";
  return *this;
}

JsonLine& JsonLine::raw(std::string_view k, std::string_view json) {
  key(k);
  fields_ += json;
  return *this;
}

std::string JsonLine::finish(std::int64_t time_us, std::uint64_t session) const {
  std::string out;
  out.reserve(fields_.size() + 48);
  char digits[24];
  out += "{\"t\":";
  out.append(digits, std::to_chars(digits, digits + sizeof digits, time_us).ptr);
  out += ",\"s\":";
  out.append(digits, std::to_chars(digits, digits + sizeof digits, session).ptr);
  out += fields_;
  out += '}';
  return out;
}

}  // namespace imapscope::inspect
