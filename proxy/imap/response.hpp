// A server message as the ResponseDecoder parsed it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "proxy/imap/session_state.hpp"
#include "proxy/imap/token.hpp"
#include "proxy/imap/verbs.hpp"

namespace imapscope::imap {

// response = *(continue-req / response-data) response-done   (RFC 9051 §9)
enum class ResponseKind : std::uint8_t {
  Continuation,  // continue-req = "+" SP (resp-text / base64) CRLF
  Status,        // "*" SP (OK / NO / BAD / BYE / PREAUTH) SP resp-text
  Data,          // "*" SP [number SP] name ...: CAPABILITY, LIST, FETCH, EXISTS...
  Tagged,        // response-tagged = tag SP resp-cond-state CRLF
};
std::string_view response_kind_name(ResponseKind kind);

struct Response {
  ResponseKind kind = ResponseKind::Data;
  std::string_view tag;             // Tagged
  Status status = Status::None;     // Status, Tagged
  std::optional<std::uint32_t> number;  // "* 23 EXISTS", "* 5 FETCH (...)"
  ResponseName name = ResponseName::Other;
  std::string_view name_text;       // the response name as sent
  // resp-text = ["[" resp-text-code "]" SP] [text]
  std::string_view code;            // "CAPABILITY", "UIDVALIDITY", "ALERT"... as sent
  std::string_view code_args;       // what follows the code name up to "]"
  std::string_view text;            // Status, Tagged, Continuation: the human-readable text
  std::span<const Token> args;      // Data: the tokens after the name

  // Tagged: the command it completes, when that command was seen.
  bool matched = false;
  Verb command_verb = Verb::Other;
  bool command_uid = false;
  SessionEffect effect = SessionEffect::None;
  bool cancels_literal = false;     // it refused a client's synchronising literal
  ContinuationFor continuation_for = ContinuationFor::Unexpected;  // Continuation

  bool greeting = false;            // the server's first response
  bool complete = false;            // false on MessagePart: a literal is still to come
  bool rejected = false;            // a limit was hit: only the head was read
  bool malformed = false;
  std::uint64_t literal_bytes = 0;
};

// Calls fn(atom) for each space-separated word of a capability list or code args.
template <typename Fn>
void for_each_word(std::string_view text, Fn&& fn) {
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j > i) fn(text.substr(i, j - i));
    i = j;
  }
}

}  // namespace imapscope::imap
