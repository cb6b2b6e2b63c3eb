#include "proxy/route/route_map.hpp"

#include <unordered_set>

#include "proxy/util/cidr.hpp"
#include "proxy/util/json_reader.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::route {
namespace {

constexpr std::size_t kMaxLine = 8192;
constexpr std::string_view kDefaultRefusal = "This account is not served here.";

struct Field {
  std::string text;
  std::size_t column = 0;  // 1-based, in bytes
  bool quoted = false;
};

// What is wrong on the line being read, and where (fail() adds the file and line).
struct LineError {
  LineError(std::size_t c, std::string r) : column(c), reason(std::move(r)) {}  // clang 14: no T(a, b) for aggregates
  std::size_t column;
  std::string reason;
};

char lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = lower_ascii(c);
  return out;
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_control(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

// Splits a line into fields; a quoted field ("...", with \" and \\) may hold blanks.
std::vector<Field> split_fields(std::string_view line) {
  std::vector<Field> fields;
  std::size_t i = 0;
  while (i < line.size()) {
    if (is_blank(line[i])) {
      ++i;
      continue;
    }
    if (line[i] == '#') break;
    Field field;
    field.column = i + 1;
    if (line[i] == '"') {
      field.quoted = true;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < line.size() && (line[i] == '"' || line[i] == '\\')) {
          field.text += line[i++];
          continue;
        }
        if (is_control(c)) throw LineError(i, "a control character in quoted text");
        field.text += c;
      }
      if (!closed) throw LineError(field.column, "the quoted text does not end (a \" is missing)");
      if (i < line.size() && !is_blank(line[i])) throw LineError(i + 1, "a blank must follow the quoted text");
    } else {
      while (i < line.size() && !is_blank(line[i])) {
        if (line[i] == '"') throw LineError(i + 1, "a quote inside a field (quote the whole field)");
        if (is_control(line[i])) throw LineError(i + 1, "a control character");
        field.text += line[i++];
      }
    }
    fields.push_back(std::move(field));
  }
  return fields;
}

// A DNS name: labels of letters, digits and hyphens (RFC 1123), underscores tolerated.
bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t label = 0;
  for (const char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0 || host.size() > 1;
}

bool is_ip_address(std::string_view text) {
  return text.find('/') == std::string_view::npos && util::Cidr::parse(text).has_value();
}

struct ParsedBackend {
  std::string host;
  std::optional<std::uint16_t> port;
};

ParsedBackend parse_backend(const Field& field) {
  std::string_view text = field.text;
  ParsedBackend out;
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) throw LineError(field.column, "an IPv6 address without its closing ]");
    out.host = std::string(text.substr(1, close - 1));
    if (out.host.find(':') == std::string::npos || !is_ip_address(out.host)) {
      throw LineError(field.column, "\"" + out.host + "\" in brackets is not an IPv6 address");
    }
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw LineError(field.column + close + 1, "after ] comes :PORT");
      port_text = rest.substr(1);
      has_port = true;
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      throw LineError(field.column, "an IPv6 address goes in brackets: [" + std::string(text) + "]:PORT");
    }
    out.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = text.substr(colon + 1);
      has_port = true;
    }
    if (!is_ip_address(out.host) && !is_host_name(out.host)) {
      throw LineError(field.column, "\"" + out.host + "\" is not an IP address or a host name");
    }
  }
  if (has_port) {
    const auto port = util::parse_unsigned(port_text);
    if (!port || *port == 0 || *port > 65535) {
      throw LineError(field.column + (text.size() - port_text.size()),
                      "bad port \"" + std::string(port_text) + "\" (1 to 65535)");
    }
    out.port = static_cast<std::uint16_t>(*port);
  }
  return out;
}

}  // namespace

bool glob_matches(std::string_view pattern, std::string_view text) {
  // Greedy with one backtrack point (the last `*`): linear-ish, never exponential.
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

RouteMap RouteMap::parse(std::string_view text, const std::string& file, BackendTls default_tls) {
  RouteMap map;
  std::unordered_map<std::string, std::uint32_t> backend_index;  // name and TLS -> index
  std::unordered_map<std::string, std::uint32_t> glob_lines;
  std::uint32_t line_number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++line_number;
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto fail = [&](std::size_t column, const std::string& reason) {
      throw util::InputError(file + ":" + std::to_string(line_number) + ":" + std::to_string(column) + ": " + reason);
    };
    try {
      if (line.size() > kMaxLine) throw LineError(kMaxLine + 1, "a line longer than " + std::to_string(kMaxLine) + " bytes");
      const auto fields = split_fields(line);
      if (fields.empty()) continue;
      const Field& pattern_field = fields[0];
      if (pattern_field.quoted) throw LineError(pattern_field.column, "a pattern is not quoted");
      if (fields.size() < 2) {
        throw LineError(line.size() + 1, "a backend (host:port, or - to refuse) must follow the pattern");
      }
      Target target;
      target.line = line_number;
      const Field& backend_field = fields[1];
      if (backend_field.quoted) throw LineError(backend_field.column, "a backend is not quoted");
      if (backend_field.text == "-") {
        target.refused = true;
        if (fields.size() > 3) throw LineError(fields[3].column, "nothing may follow the refusal's text");
        if (fields.size() == 3 && !fields[2].quoted) {
          throw LineError(fields[2].column, "the refusal's text goes in quotes: - \"text for the client\"");
        }
        target.index = static_cast<std::uint32_t>(map.refusals_.size());
        map.refusals_.push_back(fields.size() == 3 ? fields[2].text : std::string(kDefaultRefusal));
      } else {
        auto parsed = parse_backend(backend_field);
        std::optional<BackendTls> tls;
        auto set_tls = [&](const Field& option, BackendTls value) {
          if (tls) throw LineError(option.column, "a second TLS option (tls, starttls, plain: one at most)");
          tls = value;
        };
        for (std::size_t i = 2; i < fields.size(); ++i) {
          const Field& option = fields[i];
          if (option.quoted) throw LineError(option.column, "quoted text belongs to a refusal (-) only");
          if (option.text == "tls") {
            set_tls(option, BackendTls::Implicit);
          } else if (option.text == "starttls") {
            set_tls(option, BackendTls::Starttls);
          } else if (option.text == "plain") {
            set_tls(option, BackendTls::None);
          } else if (option.text == "master") {
            // A master login takes the master's password, not the client's, and a map
            // has no password to check the client's against: anyone would get in.
            throw LineError(option.column,
                            "master: a map can't check the client's password, so a master login would let any"
                            " password in; let an auth_http service that checks it answer with one");
          } else if (option.text.rfind("user=", 0) == 0) {
            if (target.login_user) throw LineError(option.column, "user= is given twice");
            if (option.text.size() == 5) throw LineError(option.column, "user= needs a name");
            target.login_user = option.text.substr(5);
          } else {
            throw LineError(option.column, "unknown option \"" + option.text + "\" (tls, starttls, plain, user=NAME)");
          }
        }
        Backend backend;
        backend.host = std::move(parsed.host);
        backend.tls = tls.value_or(default_tls);
        backend.port = parsed.port.value_or(backend.tls == BackendTls::Implicit ? 993 : 143);
        // The same address with another TLS mode is another way to connect, the same
        // backend for health and metrics (backends() keeps the first).
        const auto key = backend.name() + " " + std::to_string(static_cast<int>(backend.tls));
        auto [it, fresh] = backend_index.emplace(key, static_cast<std::uint32_t>(map.backends_.size()));
        if (fresh) map.backends_.push_back(std::move(backend));
        target.index = it->second;
      }

      const std::string pattern = lower(pattern_field.text);
      auto duplicate = [&](std::uint32_t first) {
        throw LineError(pattern_field.column,
                        "duplicate pattern \"" + pattern_field.text + "\" (first on line " + std::to_string(first) + ")");
      };
      if (pattern == "*") {
        if (map.default_) duplicate(map.default_->line);
        map.default_ = std::move(target);
      } else if (pattern.find('*') != std::string::npos) {
        auto [it, fresh] = glob_lines.emplace(pattern, line_number);
        if (!fresh) duplicate(it->second);
        map.globs_.push_back(Glob{pattern, std::move(target)});
      } else if (pattern.front() == '@') {
        if (pattern.size() == 1 || pattern.find('@', 1) != std::string::npos) {
          throw LineError(pattern_field.column, "a domain pattern is @domain");
        }
        auto [it, fresh] = map.domains_.emplace(pattern.substr(1), target);
        if (!fresh) duplicate(it->second.line);
      } else {
        auto [it, fresh] = map.users_.emplace(pattern, target);
        if (!fresh) duplicate(it->second.line);
      }
      ++map.entry_count_;
    } catch (const LineError& error) {
      fail(error.column, error.reason);
    }
  }
  return map;
}

LookupResult RouteMap::answer(const Target& target) const {
  LookupResult result;
  if (target.refused) {
    result.status = LookupStatus::Refused;
    result.message = refusals_[target.index];
    return result;
  }
  result.status = LookupStatus::Routed;
  result.route.backend = backends_[target.index];
  result.route.login_user = target.login_user;
  return result;
}

std::optional<LookupResult> RouteMap::find(std::string_view user) const {
  const std::string key = lower(user);
  if (const auto it = users_.find(key); it != users_.end()) return answer(it->second);
  if (const auto at = key.rfind('@'); at != std::string::npos) {
    if (const auto it = domains_.find(key.substr(at + 1)); it != domains_.end()) return answer(it->second);
  }
  for (const auto& glob : globs_) {
    if (glob_matches(glob.pattern, key)) return answer(glob.target);
  }
  if (default_) return answer(*default_);
  return std::nullopt;
}

LookupResult RouteMap::lookup(std::string_view user) const {
  if (auto found = find(user)) return std::move(*found);
  // As an auth service or Dovecot's passdb answers a user it doesn't know: a refusal,
  // not [UNAVAILABLE] (which tells the client to come back later).
  LookupResult none;
  none.status = LookupStatus::Refused;
  none.message = "[AUTHENTICATIONFAILED] Authentication failed.";
  return none;
}

std::vector<Backend> RouteMap::backends() const {
  std::vector<Backend> out;
  std::unordered_set<std::string> seen;
  for (const auto& backend : backends_) {
    if (seen.insert(backend.name()).second) out.push_back(backend);
  }
  return out;
}

}  // namespace imapscope::route
