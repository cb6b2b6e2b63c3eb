#include "proxy/transport/http_request.hpp"

#include <cstdint>

namespace imapscope::transport {
namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

bool is_http_token_char(char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

namespace {

// pchar without pct-encoded (RFC 3986, 3.3), plus "/" and "?" as the path and query allow.
bool is_target_char(char c) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '-': case '.': case '_': case '~':                                    // unreserved
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*':     // sub-delims
    case '+': case ',': case ';': case '=':
    case ':': case '@': case '/': case '?':
      return true;
    default:
      return false;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// field-value characters (RFC 9110, 5.5): visible ASCII, obs-text, and SP / HTAB inside.
bool is_field_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || u == '\t' || (u >= 0x21 && u != 0x7f);
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

ParsedHead refuse(std::string error, int status = 400) {
  ParsedHead out;
  out.status = status;
  out.error = std::move(error);
  return out;
}

bool valid_target(std::string_view target) {
  if (target.empty() || target[0] != '/') return false;  // origin-form only
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (target[i] == '%') {
      if (i + 2 >= target.size() || hex_value(target[i + 1]) < 0 || hex_value(target[i + 2]) < 0) return false;
      i += 2;
    } else if (!is_target_char(target[i])) {
      return false;
    }
  }
  return true;
}

void parse_query(std::string_view query, std::map<std::string, std::string>& out) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    const auto value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    out[percent_decode(pair.substr(0, eq))] = percent_decode(value);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 && hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

HeadScan scan_http_head(std::string_view data) {
  HeadScan scan;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (data[i] == '\r') {
      if (i + 1 == data.size()) return scan;
      if (data[i + 1] != '\n') {
        scan.state = HeadScan::State::Malformed;
        scan.error = "a CR not followed by LF in the request head";
        return scan;
      }
    } else if (data[i] == '\n') {
      if (i == 0 || data[i - 1] != '\r') {
        scan.state = HeadScan::State::Malformed;
        scan.error = "a bare LF in the request head (lines end in CRLF)";
        return scan;
      }
      if (i >= 3 && data.substr(i - 3, 4) == "\r\n\r\n") {
        scan.state = HeadScan::State::Complete;
        scan.end = i + 1;
        return scan;
      }
    }
  }
  return scan;
}

ParsedHead parse_http_head(std::string_view head) {
  HttpRequest r;
  auto line_end = head.find("\r\n");
  if (line_end == std::string_view::npos) return refuse("the request line does not end in CRLF");
  const auto line = head.substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return refuse("the request line is not METHOD SP TARGET SP VERSION");
  }
  const auto method = line.substr(0, sp1);
  const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = line.substr(sp2 + 1);
  if (method.empty()) return refuse("no method");
  for (const char c : method) {
    if (!is_http_token_char(c)) return refuse("the method is not a token");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) || version[6] != '.' ||
      !is_digit(version[7])) {
    return refuse("the version is not HTTP/x.y");
  }
  if (version[5] != '1') return refuse("only HTTP/1.1 and HTTP/1.0 are spoken here", 505);
  if (!valid_target(target)) return refuse("the request target is not an absolute path with an optional query");
  r.method = std::string(method);
  r.version = std::string(version);
  const auto question = target.find('?');
  r.path = percent_decode(target.substr(0, question));
  if (question != std::string_view::npos) parse_query(target.substr(question + 1), r.query);

  std::size_t lengths = 0, hosts = 0;
  while (line_end + 2 < head.size()) {
    const auto start = line_end + 2;
    line_end = head.find("\r\n", start);
    if (line_end == std::string_view::npos) return refuse("a header line does not end in CRLF");
    const auto field = head.substr(start, line_end - start);
    if (field.empty()) return refuse("an empty line inside the head");
    if (field[0] == ' ' || field[0] == '\t') return refuse("a folded header line (obs-fold)");
    const auto colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return refuse("a header line without a name and a colon");
    const auto name = field.substr(0, colon);
    for (const char c : name) {
      if (c == ' ' || c == '\t') return refuse("whitespace between a header name and its colon");
      if (!is_http_token_char(c)) return refuse("a header name that is not a token");
    }
    auto value = field.substr(colon + 1);
    for (const char c : value) {
      if (!is_field_char(c)) return refuse("a control character in a header value");
    }
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    auto key = lower(name);
    if (key == "content-length") ++lengths;
    if (key == "host") ++hosts;
    auto [it, fresh] = r.headers.emplace(key, std::string(value));
    if (!fresh) it->second += (key == "cookie" ? "; " : ", ") + std::string(value);
  }
  if (lengths > 1) return refuse("more than one Content-Length");
  if (hosts > 1) return refuse("more than one Host");
  if (hosts == 0 && r.version == "HTTP/1.1") return refuse("no Host (HTTP/1.1 requires it)");
  if (r.headers.count("transfer-encoding")) {
    if (lengths > 0) return refuse("both Transfer-Encoding and Content-Length");
    return refuse("Transfer-Encoding is not supported here: send Content-Length", 501);
  }
  if (lengths == 1) {
    const auto& text = r.headers["content-length"];
    if (text.empty()) return refuse("an empty Content-Length");
    std::uint64_t length = 0;
    for (const char c : text) {
      if (!is_digit(c)) return refuse("a Content-Length that is not a number");
      if (length > (std::uint64_t{1} << 40)) return refuse("a Content-Length out of range", 413);
      length = length * 10 + static_cast<std::uint64_t>(c - '0');
    }
    r.content_length = static_cast<std::size_t>(length);
  }
  ParsedHead out;
  out.request = std::move(r);
  out.status = 0;
  return out;
}

}  // namespace imapscope::transport
