// Who may use the admin address (docs/security.md, "Admin address"): the operator,
// who holds the token (a file only its owner can read), and nobody a web page
// sends. A browser could otherwise be made to act for a page it has open:
// - DNS rebinding makes a page's own name point at 127.0.0.1, so the page reads
//   what the admin address answers: the Host must name the admin address itself
//   (its IP, localhost on loopback, or a name the operator lists);
// - a cross-site form or fetch would start captures with the browser's cookie:
//   the cookie is SameSite=Strict, and state changes also need application/json
//   (no form can send it, a fetch only after a preflight nobody answers) and an
//   Origin / Sec-Fetch-Site that is this address or absent.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "proxy/transport/http_server.hpp"
#include "proxy/transport/settings.hpp"

namespace imapscope::app {

class AdminAccess {
 public:
  // token: the credential (non-empty); address: where the server listens; hosts:
  // more names the Host may give ("admin.example.org" any port, or "name:port").
  AdminAccess(std::string token, transport::Endpoint address, std::vector<std::string> hosts);

  // A refusal (421) when the Host names something else than this address.
  std::optional<transport::HttpResponse> check_host(const transport::HttpRequest& request) const;
  // "Authorization: Bearer <token>" or the page's cookie.
  bool authorised(const transport::HttpRequest& request) const;
  // For POST and DELETE: a refusal (403 cross-origin, 415 not JSON) or nothing.
  std::optional<transport::HttpResponse> check_state_change(const transport::HttpRequest& request) const;
  // "GET /?token=...": the browser's way in. 303 to "/" with the cookie set, or 401.
  transport::HttpResponse log_in(const transport::HttpRequest& request) const;
  // What a request without the credential gets: the page a form to give the token,
  // the API a JSON error.
  transport::HttpResponse unauthorised(const transport::HttpRequest& request) const;

  // Whether the address is loopback (then /metrics needs no credential).
  bool loopback() const { return loopback_; }

 private:
  // "127.0.0.1:9143", "localhost:9143", a listed name...: whether it is this address.
  bool names_this_address(const std::string& authority) const;

  std::string token_;
  transport::Endpoint address_;
  std::vector<std::string> hosts_;  // lower case
  bool loopback_ = false;
  bool wildcard_ = false;  // 0.0.0.0 or ::
  std::string cookie_name_;
  std::string cookie_value_;
};

}  // namespace imapscope::app
