#include "proxy/route/auth_http.hpp"

#include "proxy/imap/abnf.hpp"

#include <nlohmann/json.hpp>

#include "proxy/util/cidr.hpp"
#include "proxy/util/text.hpp"

namespace imapscope::route {
namespace {

constexpr std::string_view kDefaultRefusal = "Authentication failed.";
constexpr std::string_view kDefaultNologin = "Login disabled.";
constexpr std::size_t kMaxQuoted = 100;  // of a service's value in an Unavailable reason

// Values nginx copies unescaped (addresses, names it made itself) can't break the
// request's lines here either: control characters are dropped.
std::string header_safe(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  }
  return out;
}

// Text that goes into the client's "tag NO <text>" line: one line of printable text.
std::string line_safe(std::string_view text) {
  std::string out;
  for (const char c : text) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  return out;
}

std::string shown(std::string_view value) {
  return "\"" + line_safe(value.substr(0, kMaxQuoted)) + (value.size() > kMaxQuoted ? "...\"" : "\"");
}

AuthHttpVerdict unavailable(std::string why) {
  AuthHttpVerdict verdict;
  verdict.result.status = LookupStatus::Unavailable;
  verdict.result.message = std::move(why);
  return verdict;
}

std::chrono::seconds auth_wait(const HttpAnswer& answer) {
  // ngx_atoi: digits only; anything else is as if it weren't there.
  const auto seconds = util::parse_unsigned(answer.header("Auth-Wait"));
  if (!seconds) return std::chrono::seconds{0};
  return std::min(std::chrono::seconds(static_cast<std::int64_t>(std::min<std::uint64_t>(*seconds, 1u << 30))),
                  kMaxAuthWait);
}

bool is_ip_address(std::string_view text) {
  return !text.empty() && text.find('/') == std::string_view::npos && util::Cidr::parse(text).has_value();
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_';
    if (!ok) return false;
  }
  return host.front() != '.' && host.front() != '-';
}

AuthHttpVerdict parse_headers(const HttpAnswer& answer, BackendTls default_tls) {
  bool wait = false;
  std::optional<std::string> error;
  for (const auto& [name, value] : answer.headers) {
    if (!imap::iequals(name, "Auth-Status")) continue;
    if (value == "OK") continue;
    if (value == "WAIT") {
      wait = true;
      continue;
    }
    error = value;
  }
  AuthHttpVerdict verdict;
  if (error) {
    verdict.result.status = LookupStatus::Refused;
    verdict.result.message = error->empty() ? std::string(kDefaultRefusal) : line_safe(*error);
    verdict.result.wait = auth_wait(answer);
    return verdict;
  }
  if (wait) {
    verdict.ask_again = true;
    verdict.result.status = LookupStatus::Unavailable;
    verdict.result.message = "the lookup service answered WAIT";
    verdict.result.wait = auth_wait(answer);
    return verdict;
  }
  const auto server = answer.header("Auth-Server");
  const auto port_text = answer.header("Auth-Port");
  if (server.empty() || port_text.empty()) {
    return unavailable("the lookup service sent no Auth-Server or no Auth-Port (HTTP status " +
                       std::to_string(answer.status) + ")");
  }
  if (!is_ip_address(server)) return unavailable("the lookup service sent an Auth-Server that is not an IP address: " + shown(server));
  const auto port = util::parse_unsigned(port_text);
  if (!port || *port < 1 || *port > 65535) return unavailable("the lookup service sent a bad Auth-Port: " + shown(port_text));
  verdict.result.status = LookupStatus::Routed;
  verdict.result.route.backend = Backend{server, static_cast<std::uint16_t>(*port), default_tls};
  if (answer.has_header("Auth-User")) verdict.result.route.login_user = answer.header("Auth-User");
  if (answer.has_header("Auth-Pass")) verdict.result.route.login_password = answer.header("Auth-Pass");
  return verdict;
}

// Dovecot's valueless flags ("nologin", "proxy") are yes; "no"-like values are no.
std::optional<bool> flag(const nlohmann::json& value) {
  if (value.is_null()) return true;
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer()) return value.get<std::int64_t>() != 0;
  if (!value.is_string()) return std::nullopt;
  const auto text = value.get<std::string>();
  for (const auto* yes : {"", "yes", "y", "true", "1", "any-cert"}) {
    if (imap::iequals(text, yes)) return true;
  }
  for (const auto* no : {"no", "n", "false", "0"}) {
    if (imap::iequals(text, no)) return false;
  }
  return std::nullopt;
}

AuthHttpVerdict parse_json(const HttpAnswer& answer, BackendTls default_tls) {
  if (answer.status < 200 || answer.status > 299) {
    return unavailable("the lookup service answered HTTP status " + std::to_string(answer.status));
  }
  const auto doc = nlohmann::json::parse(answer.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return unavailable("the lookup service's JSON answer is not a JSON object");
  auto string_field = [&](const char* key) -> std::optional<std::string> {
    const auto it = doc.find(key);
    if (it == doc.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto flag_field = [&](const char* key, std::optional<bool>& out) -> bool {
    const auto it = doc.find(key);
    if (it == doc.end()) return true;
    out = flag(*it);
    return out.has_value();
  };
  for (const auto* key : {"host", "destuser", "pass", "reason"}) {
    if (doc.contains(key) && !doc[key].is_string()) {
      return unavailable(std::string("the lookup service's JSON has a \"") + key + "\" that is not a string");
    }
  }
  std::optional<bool> nologin, ssl, starttls, master;
  if (!flag_field("nologin", nologin)) return unavailable("the lookup service's JSON has a bad \"nologin\"");
  if (nologin.value_or(false)) {
    AuthHttpVerdict verdict;
    verdict.result.status = LookupStatus::Refused;
    const auto reason = string_field("reason").value_or("");
    verdict.result.message = reason.empty() ? std::string(kDefaultNologin) : line_safe(reason);
    return verdict;
  }
  if (!flag_field("ssl", ssl)) return unavailable("the lookup service's JSON has a bad \"ssl\" (yes or no)");
  if (!flag_field("starttls", starttls)) return unavailable("the lookup service's JSON has a bad \"starttls\" (yes or no)");
  if (!flag_field("master", master)) {
    return unavailable("the lookup service's JSON names a master user: only yes or no are taken (the master user is configured)");
  }
  const auto host = string_field("host").value_or("");
  if (!is_ip_address(host) && !is_host_name(host)) {
    return unavailable("the lookup service's JSON has no usable \"host\": " + shown(host));
  }
  BackendTls tls = default_tls;
  if (starttls.value_or(false)) {
    tls = BackendTls::Starttls;
  } else if (ssl.value_or(false)) {
    tls = BackendTls::Implicit;
  } else if ((ssl && !*ssl) || (starttls && !*starttls)) {
    tls = BackendTls::None;
  }
  std::uint64_t port = tls == BackendTls::Implicit ? 993 : 143;
  if (const auto it = doc.find("port"); it != doc.end()) {
    std::optional<std::uint64_t> given;
    if (it->is_number_unsigned()) given = it->get<std::uint64_t>();
    if (it->is_string()) given = util::parse_unsigned(it->get<std::string>());
    if (!given || *given < 1 || *given > 65535) return unavailable("the lookup service's JSON has a bad \"port\"");
    port = *given;
  }
  AuthHttpVerdict verdict;
  verdict.result.status = LookupStatus::Routed;
  verdict.result.route.backend = Backend{host, static_cast<std::uint16_t>(port), tls};
  verdict.result.route.login_user = string_field("destuser");
  verdict.result.route.login_password = string_field("pass");
  verdict.result.route.master = master.value_or(false);
  return verdict;
}

bool is_json(const HttpAnswer& answer) {
  std::string type = answer.header("Content-Type");
  type = type.substr(0, type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.pop_back();
  return imap::iequals(type, "application/json");
}

}  // namespace

std::string HttpAnswer::header(std::string_view name) const {
  for (auto it = headers.rbegin(); it != headers.rend(); ++it) {
    if (imap::iequals(it->first, name)) return it->second;
  }
  return {};
}

bool HttpAnswer::has_header(std::string_view name) const {
  for (const auto& header : headers) {
    if (imap::iequals(header.first, name)) return true;
  }
  return false;
}

std::string auth_http_escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == ' ' || byte == '%') {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string auth_http_request(const AuthHttpTarget& target, const LoginRequest& request) {
  // nginx's names: LOGIN and AUTHENTICATE PLAIN / LOGIN are all "plain"; the token
  // mechanisms (which nginx doesn't offer) go by their own name.
  std::string method = header_safe(request.method);
  for (auto& c : method) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (method.empty() || method == "login") method = "plain";
  std::string out;
  out.reserve(256 + request.user.size() + 3 * request.secret.size());
  out += "GET " + header_safe(target.path.empty() ? std::string("/") : target.path) + " HTTP/1.0\r\n";
  out += "Host: " + header_safe(target.host_header) + "\r\n";
  out += "Auth-Method: " + method + "\r\n";
  out += "Auth-User: " + auth_http_escape(request.user) + "\r\n";
  out += "Auth-Pass: " + auth_http_escape(request.secret) + "\r\n";
  out += "Auth-Protocol: imap\r\n";
  out += "Auth-Login-Attempt: " + std::to_string(request.attempt) + "\r\n";
  out += "Client-IP: " + header_safe(request.client_ip) + "\r\n";
  if (!request.proxy_protocol_ip.empty()) {
    out += "Proxy-Protocol-Addr: " + header_safe(request.proxy_protocol_ip) + "\r\n";
    out += "Proxy-Protocol-Port: " + std::to_string(request.proxy_protocol_port) + "\r\n";
    out += "Proxy-Protocol-Server-Addr: " + header_safe(request.proxy_protocol_server_ip) + "\r\n";
    out += "Proxy-Protocol-Server-Port: " + std::to_string(request.proxy_protocol_server_port) + "\r\n";
  }
  if (request.client_tls) {
    out += "Auth-SSL: on\r\n";
    if (!request.tls_protocol.empty()) out += "Auth-SSL-Protocol: " + header_safe(request.tls_protocol) + "\r\n";
    if (!request.tls_cipher.empty()) out += "Auth-SSL-Cipher: " + header_safe(request.tls_cipher) + "\r\n";
  }
  out += "\r\n";
  return out;
}

AuthHttpVerdict parse_auth_http_answer(const HttpAnswer& answer, BackendTls default_tls) {
  if (!answer.has_header("Auth-Status") && is_json(answer)) return parse_json(answer, default_tls);
  return parse_headers(answer, default_tls);
}

}  // namespace imapscope::route
