#include "proxy/util/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace imapscope::util {
namespace {
std::atomic<LogLevel> g_level{LogLevel::Info};
std::atomic<LogFormat> g_format{LogFormat::KeyValue};
std::mutex g_mutex;

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
  }
  return "info";
}

// sd-daemon.h's prefixes: journald takes the line's priority from them.
std::string_view syslog_prefix(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "<7>";
    case LogLevel::Info: return "<6>";
    case LogLevel::Warning: return "<4>";
    case LogLevel::Error: return "<3>";
  }
  return "<6>";
}

std::string timestamp(std::chrono::system_clock::time_point now) {
  const auto seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[40];
  const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(millis));
  return stamp;
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\u%04x", c);
      out += hex;
    } else {
      out += ch;
    }
  }
  out += '"';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// A value as log_quote wrote it, from after the opening quote; pos ends after the closing one.
std::string unquote(std::string_view fields, std::size_t& pos) {
  std::string value;
  while (pos < fields.size() && fields[pos] != '"') {
    if (fields[pos] == '\\' && pos + 1 < fields.size()) {
      if (fields[pos + 1] == 'x' && pos + 3 < fields.size() && hex_digit(fields[pos + 2]) >= 0 &&
          hex_digit(fields[pos + 3]) >= 0) {
        value += static_cast<char>(hex_digit(fields[pos + 2]) * 16 + hex_digit(fields[pos + 3]));
        pos += 4;
        continue;
      }
      value += fields[pos + 1];
      pos += 2;
      continue;
    }
    value += fields[pos++];
  }
  if (pos < fields.size()) ++pos;  // the closing quote
  return value;
}

bool is_integer(std::string_view text) {
  if (text.empty() || text.size() > 15) return false;  // exact in a double
  if (text.size() > 1 && text[0] == '0') return false;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// key=value fields (values bare, or quoted by log_quote) as JSON members; bare
// integers as numbers. A word without "=" goes to "msg".
void append_json_fields(std::string& out, std::string_view fields) {
  std::string msg;
  std::size_t pos = 0;
  while (pos < fields.size()) {
    if (fields[pos] == ' ') {
      ++pos;
      continue;
    }
    const auto word_end = fields.find_first_of(" =", pos);
    if (word_end == std::string_view::npos || fields[word_end] == ' ') {
      const auto end = word_end == std::string_view::npos ? fields.size() : word_end;
      msg += (msg.empty() ? "" : " ") + std::string(fields.substr(pos, end - pos));
      pos = end;
      continue;
    }
    const auto key = fields.substr(pos, word_end - pos);
    pos = word_end + 1;
    std::string value;
    bool quoted = false;
    if (pos < fields.size() && fields[pos] == '"') {
      ++pos;
      value = unquote(fields, pos);
      quoted = true;
    } else {
      const auto end = std::min(fields.find(' ', pos), fields.size());
      value = std::string(fields.substr(pos, end - pos));
      pos = end;
    }
    out += ',';
    append_json_string(out, key);
    out += ':';
    if (!quoted && is_integer(value)) {
      out += value;
    } else {
      append_json_string(out, value);
    }
  }
  if (!msg.empty()) {
    out += ",\"msg\":";
    append_json_string(out, msg);
  }
}

}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
bool log_enabled(LogLevel level) { return level >= g_level.load(std::memory_order_relaxed); }
void set_log_format(LogFormat format) { g_format = format; }
LogFormat log_format() { return g_format.load(std::memory_order_relaxed); }

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long device = 0, inode = 0;
  if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == device && static_cast<unsigned long long>(st.st_ino) == inode;
}

std::string format_log_line(LogLevel level, std::string_view fields, LogFormat format, bool journal,
                            std::chrono::system_clock::time_point now) {
  std::string line;
  line.reserve(fields.size() + 64);
  if (journal) line += syslog_prefix(level);
  if (format == LogFormat::Json) {
    line += "{\"ts\":\"" + timestamp(now) + "\",\"level\":\"" + std::string(level_name(level)) + "\"";
    append_json_fields(line, fields);
    line += '}';
    return line;
  }
  if (!journal) line += timestamp(now) + " ";
  line.append("level=").append(level_name(level)).append(" ").append(fields);
  return line;
}

void log_line(LogLevel level, std::string_view fields) {
  if (!log_enabled(level)) return;
  static const bool journal = stderr_is_journal();  // stderr stays what it was at start
  auto line = format_log_line(level, fields, g_format.load(std::memory_order_relaxed), journal,
                              std::chrono::system_clock::now());
  line += '\n';
  std::lock_guard lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::string log_quote(std::string_view value, std::size_t max_length) {
  std::string out = "\"";
  for (std::size_t i = 0; i < value.size() && i < max_length; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (value.size() > max_length) out += "...";
  out += '"';
  return out;
}

}  // namespace imapscope::util
