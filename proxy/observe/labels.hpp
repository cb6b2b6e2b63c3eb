// The label values metrics use, each a bounded set: a flood of odd command names,
// ID strings or mechanisms can't create new series.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/imap/verbs.hpp"
#include "proxy/imap/session_state.hpp"

namespace imapscope::observe {

// Commands: the known IMAP verbs, their UID forms ("uid_fetch"), and "other".
inline constexpr std::size_t kVerbCount = static_cast<std::size_t>(imap::Verb::Other) + 1;
inline constexpr std::size_t kCommandLabels = 2 * kVerbCount;
std::size_t command_index(imap::Verb verb, bool uid);
const std::string& command_label(std::size_t index);  // "fetch", "uid_fetch", "other"

// Results of a command: its tagged status, or none when the session ended first.
enum class Result : std::size_t { Ok, No, Bad, None };
inline constexpr std::size_t kResultLabels = 4;
Result result_of(imap::Status status);
std::string_view result_label(Result result);

// SASL mechanisms: the registered ones clients use, "login_command" for LOGIN,
// "other" for anything else.
std::string_view mechanism_label(std::string_view mechanism);
std::span<const std::string_view> mechanism_labels();  // every value mechanism_label gives

// TLS versions as OpenSSL names them, "other" for anything unexpected.
std::string_view tls_version_label(std::string_view version);
std::span<const std::string_view> tls_version_labels();

// Client families: the signatures' families (they include "other" and "unknown");
// anything else maps to "other".
class FamilyLabels {
 public:
  explicit FamilyLabels(std::vector<std::string> families);
  std::size_t index(std::string_view family) const;
  const std::string& label(std::size_t index) const { return families_[index]; }
  std::size_t size() const { return families_.size(); }

 private:
  std::vector<std::string> families_;
  std::size_t other_ = 0;
};

}  // namespace imapscope::observe
