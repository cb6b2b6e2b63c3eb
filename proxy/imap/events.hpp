// What a decoder returns from next(): one event at a time, h11-style.
#pragma once

#include <cstdint>
#include <string_view>

namespace imapscope::imap {

enum class ErrorCode : std::uint8_t {
  LineTooLong,             // a message's kept bytes exceed DecoderLimits::max_line_length
  LiteralTooBig,           // a literal is larger than DecoderLimits::max_literal_size (before login: max_literal_before_login)
  LiteralSizeOverflow,     // a literal size with more digits than 64 bits hold: fatal,
                           // the end of its payload can't be found
  ListTooDeep,             // more nested lists than DecoderLimits::max_list_depth
  TagTooLong,              // a tag longer than DecoderLimits::max_tag_length
  TooManyPendingCommands,  // more unanswered commands than max_pending_commands
};

std::string_view error_code_name(ErrorCode code);  // stable snake_case, a metric label

struct DecodeError {
  ErrorCode code = ErrorCode::LineTooLong;
  std::uint64_t offset = 0;   // stream offset of the message (bytes since the stream began)
  std::string_view reason;    // human-readable, static storage
  // true: the decoder passes over the rest of the offending message (Skipped events,
  // then a Message with rejected set) and decodes the next one. false: the stream
  // can't be resynchronised; every later byte comes as Skipped.
  bool recoverable = true;
};

enum class EventKind : std::uint8_t {
  NeedMore,     // all input consumed (or none given): call again with more bytes
  Blocked,      // command decoder only: the client waits for the server ("+" or a
                // tagged result); nothing was consumed. Call again after the response
                // decoder has made progress.
  MessagePart,  // raw: the head of a message that goes on with a literal which
                // streams through (or, from a client, a synchronising literal that
                // waits for "+"). The decoder's current message holds what is parsed so far.
  LiteralData,  // raw: a chunk of literal payload, a view into the caller's input
  Message,      // raw: the rest of the message. The decoder's current message is complete.
  Skipped,      // raw: bytes of a message rejected by a limit, or of a stream that
                // can't be decoded any more; they are not parsed
  Error,        // error: a limit was hit; raw: the bytes of the message kept so far
};

std::string_view event_kind_name(EventKind kind);

// Views (raw, and everything the decoder's current message points to) are valid until
// the next call of the decoder's next(), and only while the input bytes given to it
// stay where they are.
struct Event {
  EventKind kind = EventKind::NeedMore;
  std::string_view raw;  // the exact stream bytes this event covers; empty for NeedMore/Blocked
  DecodeError error{};   // Error only
};

}  // namespace imapscope::imap
