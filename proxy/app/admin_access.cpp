#include "proxy/app/admin_access.hpp"

#include <openssl/crypto.h>

#include <asio/ip/address.hpp>

#include <algorithm>

#include "proxy/imap/abnf.hpp"
#include "proxy/inspect/encoding.hpp"

namespace imapscope::app {
namespace {

using transport::HttpRequest;
using transport::HttpResponse;

bool same_secret(std::string_view given, std::string_view expected) {
  // Constant time: how much of a guess was right must not show in the answer's timing.
  return given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

std::string trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return std::string(text);
}

// The cookie holds a value derived from the token, not the token: what a browser
// profile keeps is good for this page only, and a new token ends every cookie.
std::string cookie_value_for(const std::string& token) {
  static constexpr std::string_view kPurpose = "imapscope admin page cookie";
  return inspect::keyed_digest_hex(token, kPurpose, 32);
}

// "name:port", "[v6]:port", "name" -> (name, port or empty).
std::pair<std::string, std::string> split_authority(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return {std::string(host), ""};
    const auto rest = host.substr(close + 1);
    return {std::string(host.substr(1, close - 1)), rest.size() > 1 && rest[0] == ':' ? std::string(rest.substr(1)) : ""};
  }
  const auto colon = host.rfind(':');
  if (colon == std::string_view::npos) return {std::string(host), ""};
  return {std::string(host.substr(0, colon)), std::string(host.substr(colon + 1))};
}

constexpr std::string_view kLoginPage = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imapscope: token needed</title></head><body>
<h1>imapscope</h1>
<p>The live page needs the admin token: the first line of the token file (by default
<code>admin-token</code> in the state folder, <code>/var/lib/imapscope/admin-token</code>).
It is kept in an HttpOnly cookie for this address.</p>
<form method="get" action="/"><label>token <input name="token" type="password" autocomplete="off"></label>
<button>open</button></form>
</body></html>
)";

}  // namespace

AdminAccess::AdminAccess(std::string token, transport::Endpoint address, std::vector<std::string> hosts)
    : token_(std::move(token)), address_(std::move(address)) {
  for (const auto& h : hosts) hosts_.push_back(imap::ascii_lower(h));
  asio::error_code ec;
  const auto ip = asio::ip::make_address(address_.host, ec);
  loopback_ = !ec && ip.is_loopback();
  wildcard_ = !ec && ip.is_unspecified();
  // Cookies are kept per host, not per port: two instances on one machine must not
  // overwrite each other's.
  cookie_name_ = "imapscope_admin_" + std::to_string(address_.port);
  cookie_value_ = cookie_value_for(token_);
}

bool AdminAccess::names_this_address(const std::string& authority) const {
  const auto [name, port_text] = split_authority(authority);
  for (const auto& allowed : hosts_) {
    if (allowed == authority || allowed == name) return true;
  }
  const auto port = port_text.empty() ? std::string("80") : port_text;
  if (address_.port != 0 && port != std::to_string(address_.port)) return false;
  asio::error_code ec;
  const auto ip = asio::ip::make_address(name, ec);
  // A rebinding page always brings its own name: an IP literal can't be one.
  if (!ec) return wildcard_ || ip == asio::ip::make_address(address_.host, ec);
  return loopback_ && name == "localhost";
}

std::optional<HttpResponse> AdminAccess::check_host(const HttpRequest& request) const {
  // HTTP/1.0 clients may leave the Host out (HAProxy's httpchk does); no browser does.
  if (request.version == "HTTP/1.0" && request.headers.count("host") == 0) return std::nullopt;
  const auto host = imap::ascii_lower(request.header("host"));
  if (names_this_address(host)) return std::nullopt;
  return HttpResponse::error(421, "this is " + address_.to_string() + ", not \"" + host +
                                      "\" (names for a reverse proxy: \"admin_hosts\" in the config)");
}

bool AdminAccess::authorised(const HttpRequest& request) const {
  if (token_.empty()) return false;  // the metrics address: nothing to unlock there
  const auto bearer = request.header("authorization");
  if (!bearer.empty()) return same_secret(bearer, "Bearer " + token_);
  const auto cookies = request.header("cookie");
  std::string_view rest = cookies;
  while (!rest.empty()) {
    const auto semicolon = rest.find(';');
    const auto pair = trim(rest.substr(0, semicolon));
    rest = semicolon == std::string_view::npos ? std::string_view() : rest.substr(semicolon + 1);
    const auto eq = pair.find('=');
    if (eq != std::string::npos && pair.substr(0, eq) == cookie_name_) {
      return same_secret(pair.substr(eq + 1), cookie_value_);
    }
  }
  return false;
}

std::optional<HttpResponse> AdminAccess::check_state_change(const HttpRequest& request) const {
  // The page's own origin: the Host it was asked for, or a name listed for a reverse
  // proxy (which may rewrite the Host, and speaks https).
  const auto origin = imap::ascii_lower(request.header("origin"));
  if (!origin.empty()) {
    const auto scheme_end = origin.find("://");
    const auto scheme = origin.substr(0, scheme_end);
    const auto authority = scheme_end == std::string::npos ? std::string() : origin.substr(scheme_end + 3);
    const auto name = split_authority(authority).first;
    const bool listed = std::any_of(hosts_.begin(), hosts_.end(),
                                    [&](const std::string& h) { return h == authority || h == name; });
    const bool same = scheme == "http" && authority == imap::ascii_lower(request.header("host"));
    if (authority.empty() || (!same && !listed)) {
      return HttpResponse::error(403, "a request from another origin (" + origin + ") may not change anything here");
    }
  }
  const auto site = imap::ascii_lower(request.header("sec-fetch-site"));
  if (!site.empty() && site != "same-origin" && site != "none") {
    return HttpResponse::error(403, "a " + site + " request may not change anything here");
  }
  const auto type = request.header("content-type");
  if (imap::ascii_lower(trim(std::string_view(type).substr(0, type.find(';')))) != "application/json") {
    return HttpResponse::error(415, "changes take Content-Type: application/json");
  }
  return std::nullopt;
}

HttpResponse AdminAccess::log_in(const HttpRequest& request) const {
  const auto it = request.query.find("token");
  if (token_.empty() || it == request.query.end() || !same_secret(it->second, token_)) return unauthorised(request);
  HttpResponse r;
  r.status = 303;
  r.content_type = "text/plain; charset=utf-8";
  r.body = "logged in: see /\n";
  // Back to "/" without the token, so it leaves the address bar (and the history
  // entry) at once; the cookie is never readable by a script, never sent by
  // another site's request.
  r.headers.emplace_back("Location", "/");
  r.headers.emplace_back("Set-Cookie", cookie_name_ + "=" + cookie_value_ + "; HttpOnly; SameSite=Strict; Path=/");
  return r;
}

HttpResponse AdminAccess::unauthorised(const HttpRequest& request) const {
  HttpResponse r;
  if (request.path == "/" || request.path == "/index.html") {
    r.status = 401;
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(kLoginPage);
    r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; form-action 'self'");
  } else {
    r = HttpResponse::error(401, "the admin token is required: Authorization: Bearer <token>");
  }
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"imapscope\"");
  return r;
}

}  // namespace imapscope::app
