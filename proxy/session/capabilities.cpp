#include "proxy/session/capabilities.hpp"

#include "proxy/imap/abnf.hpp"
#include "proxy/imap/response.hpp"

namespace imapscope::session {
namespace {

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && imap::iequals(s.substr(0, prefix.size()), prefix);
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && imap::iequals(s.substr(s.size() - suffix.size()), suffix);
}

bool hidden(std::string_view cap) {
  return imap::iequals(cap, "STARTTLS") || imap::iequals(cap, "LOGINDISABLED") ||
         (starts_with_ci(cap, "AUTH=") && ends_with_ci(cap, "-PLUS")) || starts_with_ci(cap, "COMPRESS=");
}

}  // namespace

std::string rewrite_capabilities(std::string_view list, const ClientLegView& leg, bool offer_compress) {
  const bool add_starttls = !leg.tls && leg.starttls_available;
  const bool add_logindisabled = !leg.tls && leg.login_disabled_until_tls;
  bool changed = false;
  bool has_starttls = false;
  bool has_logindisabled = false;
  bool has_deflate = false;
  std::string out;
  out.reserve(list.size() + 24);
  imap::for_each_word(list, [&](std::string_view cap) {
    // Every AUTHENTICATE is refused until TLS: no mechanism is offered (Dovecot
    // hides its plaintext ones; the proxy refuses them all, so it hides them all).
    if (add_logindisabled && starts_with_ci(cap, "AUTH=")) {
      changed = true;
      return;
    }
    if (imap::iequals(cap, "STARTTLS") && add_starttls && !has_starttls) {
      has_starttls = true;
    } else if (imap::iequals(cap, "LOGINDISABLED") && add_logindisabled && !has_logindisabled) {
      has_logindisabled = true;
    } else if (imap::iequals(cap, "COMPRESS=DEFLATE") && offer_compress && !has_deflate) {
      has_deflate = true;
    } else if (hidden(cap)) {
      changed = true;
      return;
    }
    if (!out.empty()) out += ' ';
    out += cap;
  });
  if (add_starttls && !has_starttls) {
    out += " STARTTLS";
    changed = true;
  }
  if (add_logindisabled && !has_logindisabled) {
    out += " LOGINDISABLED";
    changed = true;
  }
  if (offer_compress && !has_deflate) {
    out += " COMPRESS=DEFLATE";
    changed = true;
  }
  // Single spaces between words is what servers send; anything else counts as a change.
  if (!changed && out.size() == list.size()) return std::string(list);
  return out;
}

}  // namespace imapscope::session
