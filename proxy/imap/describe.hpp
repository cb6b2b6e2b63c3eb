// Canonical one-line renderings of decoder events, for test expectations, fuzzing
// and debugging. Not for logs: they print arguments as they are, credentials too.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "proxy/imap/command.hpp"
#include "proxy/imap/events.hpp"
#include "proxy/imap/response.hpp"
#include "proxy/imap/token.hpp"

namespace imapscope::imap {

std::string_view error_reason(ErrorCode code);  // static storage

// Bytes as a C-like escaped string: printable ASCII as is, \r \n \" \\, others \xNN.
std::string escape_bytes(std::string_view bytes);

// Like escape_bytes, but leaves '"' and '\\' alone (for text that has IMAP's own escapes).
std::string escape_nonprintable(std::string_view bytes);

// tokens as IMAP-like text: atoms bare, "quoted", {n}"kept" or {n}<streamed>, ( ).
std::string describe_tokens(std::span<const Token> tokens);
std::string describe_command(const Command& command);
std::string describe_response(const Response& response);

}  // namespace imapscope::imap
