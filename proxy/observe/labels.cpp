#include "proxy/observe/labels.hpp"

#include <algorithm>
#include <array>

#include "proxy/imap/abnf.hpp"

namespace imapscope::observe {
namespace {

const std::array<std::string, kCommandLabels>& command_labels() {
  static const auto labels = [] {
    std::array<std::string, kCommandLabels> out;
    for (std::size_t i = 0; i < kVerbCount; ++i) {
      const auto verb = static_cast<imap::Verb>(i);
      const std::string name = verb == imap::Verb::Other ? "other" : imap::ascii_lower(imap::verb_name(verb));
      out[i] = name;
      out[kVerbCount + i] = verb == imap::Verb::Other ? "other" : "uid_" + name;
    }
    return out;
  }();
  return labels;
}

}  // namespace

std::size_t command_index(imap::Verb verb, bool uid) {
  const auto i = std::min(static_cast<std::size_t>(verb), kVerbCount - 1);
  // "UID" in front of a command that has no UID form is an unknown command.
  const bool uid_form = uid && (verb == imap::Verb::Fetch || verb == imap::Verb::Store || verb == imap::Verb::Search ||
                                verb == imap::Verb::Copy || verb == imap::Verb::Move || verb == imap::Verb::Expunge ||
                                verb == imap::Verb::Sort || verb == imap::Verb::Thread);
  if (uid && !uid_form) return kVerbCount - 1;
  return uid_form ? kVerbCount + i : i;
}

const std::string& command_label(std::size_t index) { return command_labels()[std::min(index, kCommandLabels - 1)]; }

Result result_of(imap::Status status) {
  switch (status) {
    case imap::Status::Ok: return Result::Ok;
    case imap::Status::No: return Result::No;
    case imap::Status::Bad: return Result::Bad;
    default: return Result::None;
  }
}

std::string_view result_label(Result result) {
  switch (result) {
    case Result::Ok: return "ok";
    case Result::No: return "no";
    case Result::Bad: return "bad";
    case Result::None: break;
  }
  return "none";
}

namespace {
constexpr std::array<std::string_view, 16> kMechanisms = {
    "plain",         "login",         "xoauth2",  "oauthbearer", "scram-sha-1", "scram-sha-256",
    "scram-sha-512", "cram-md5",      "digest-md5", "external",  "gssapi",      "ntlm",
    "anonymous",     "otp",           "login_command", "other"};
constexpr std::array<std::string_view, 5> kTlsVersions = {"TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "other"};
}  // namespace

std::string_view mechanism_label(std::string_view mechanism) {
  for (auto known : kMechanisms) {
    if (imap::iequals(known, mechanism)) return known;
  }
  return "other";
}

std::span<const std::string_view> mechanism_labels() { return kMechanisms; }

std::string_view tls_version_label(std::string_view version) {
  for (std::string_view known : kTlsVersions) {
    if (version == known) return known;
  }
  return "other";
}

std::span<const std::string_view> tls_version_labels() { return kTlsVersions; }

FamilyLabels::FamilyLabels(std::vector<std::string> families) : families_(std::move(families)) {
  for (const char* required : {"other", "unknown"}) {
    if (std::find(families_.begin(), families_.end(), required) == families_.end()) families_.emplace_back(required);
  }
  other_ = static_cast<std::size_t>(std::find(families_.begin(), families_.end(), "other") - families_.begin());
}

std::size_t FamilyLabels::index(std::string_view family) const {
  const auto it = std::find(families_.begin(), families_.end(), family);
  return it == families_.end() ? other_ : static_cast<std::size_t>(it - families_.begin());
}

}  // namespace imapscope::observe
