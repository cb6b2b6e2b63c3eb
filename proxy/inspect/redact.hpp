// What of a credential-bearing command may be written down. Redaction is always on:
// passwords, SASL payloads (initial responses and every continuation line) and
// tokens never reach a transcript; user names follow the configured policy.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "proxy/imap/command.hpp"

namespace imapscope::inspect {

enum class UserNames : std::uint8_t { Clear, Hashed, Redacted };

// The user name as the policy lets it be written: as is, "u:<16 hex>" (64 bits of
// HMAC-SHA256 of its lower-case form under `key`, the secret kept in the state
// folder: the same user always gives the same label, and nobody without the key can
// tell which user a label stands for, even from a list of every address), or "***".
std::string user_label(std::string_view user, UserNames policy, std::string_view key);

// LOGIN and AUTHENTICATE carry credentials: their text is rendered from the parsed
// command with the secrets replaced, never copied from the bytes.
bool carries_credentials(const imap::Command& command);
std::string redacted_text(const imap::Command& command, UserNames policy, std::string_view key);

// The user a SASL exchange names, where the mechanism says it without the secret:
// PLAIN (authcid of "authzid NUL authcid NUL password"), LOGIN (its first answer),
// XOAUTH2 ("user=..." before the token). payload is base64 as sent.
std::optional<std::string> sasl_user(std::string_view mechanism, std::string_view payload, bool first_answer);

}  // namespace imapscope::inspect
