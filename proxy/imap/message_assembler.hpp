// Frames one direction of an IMAP stream into messages: CRLF-terminated line parts,
// each possibly followed by a literal. Shared by the command and response decoders;
// what a line part means is the decoder's business (LineGrammar).
//
// Memory: the assembler keeps the current message's line parts and its small
// ("inline") literals, at most DecoderLimits::max_line_length bytes. Larger literals
// pass through as LiteralData views into the caller's input. A message that fits in
// one read and has no literal is never copied: it is parsed where it lies.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/imap/events.hpp"
#include "proxy/imap/limits.hpp"
#include "proxy/imap/token.hpp"
#include "proxy/imap/tokenizer.hpp"

namespace imapscope::imap {

struct LinePartInfo {
  std::optional<LiteralHeader> literal;  // the line part ends with a literal header
  std::optional<ErrorCode> error;        // a limit was hit while reading the line part
};

// The decoder's view of a line part: tokenizes it and tells whether it ends with a
// literal. Called once per complete line part.
class LineGrammar {
 public:
  // message: the bytes of the message so far; [begin, end) the line part without CRLF.
  // The tokenizer carries list nesting from one line part to the next.
  virtual LinePartInfo on_line_part(std::string_view message, std::size_t begin, std::size_t end,
                                    Tokenizer& tokenizer, std::vector<Token>& tokens) = 0;
  // Whether a line of the current message may end with a literal header (response
  // status lines never do: "{5}" at their end is text). Used for rejected messages.
  virtual bool literals_possible() const = 0;
  // Whether the sender waits for "+" before a synchronising literal's payload: true
  // for clients. Such a literal ends a rejected message: no payload will follow.
  virtual bool literals_can_wait() const = 0;

 protected:
  ~LineGrammar() = default;
};

class MessageAssembler {
 public:
  enum class Step : std::uint8_t {
    NeedMore,     // input exhausted
    Part,         // raw: line parts before a literal that streams or waits for "+"
    LiteralData,  // raw: literal payload (view into input)
    Complete,     // raw: the rest of the message; message() and tokens() are complete
    Error,        // error: a limit was hit; raw: message bytes kept so far
    Skipped,      // raw: bytes of a rejected message, or of an undecodable stream
    RejectedEnd,  // raw: the last bytes of a rejected message (may be empty)
  };
  struct Output {
    Step step = Step::NeedMore;
    std::string_view raw;
    ErrorCode error = ErrorCode::LineTooLong;
  };

  // offset: the stream offset of the first input byte (an assembler made again for
  // a stream that went on while it was given back).
  explicit MessageAssembler(const DecoderLimits& limits, std::uint64_t offset = 0);

  Output next(std::string_view& input, LineGrammar& grammar);

  // The current message: its kept bytes, and tokens whose text() is set on Complete.
  std::string_view message() const { return message_; }
  const std::vector<Token>& tokens() const { return tokens_; }
  // The first bytes of a rejected message (for its tag and command name).
  std::string_view rejected_head() const { return rejection_ ? std::string_view(rejection_->head) : std::string_view(); }
  // No byte of a message has been read since the last one ended.
  bool between_messages() const { return !in_message_ || finished_; }
  std::uint64_t literal_bytes() const { return literal_bytes_; }
  // Payload bytes of the current literal not read yet (0 outside a literal).
  std::uint64_t literal_remaining() const {
    return mode_ == Mode::StreamLiteral || mode_ == Mode::InlineLiteral ? remaining_ : 0;
  }
  std::uint64_t message_offset() const { return message_offset_; }
  // The stream offset of the next input byte.
  std::uint64_t stream_offset() const { return offset_; }
  // Between messages with nothing carried over to the next input byte: an assembler
  // made again at stream_offset() would go on exactly like this one.
  bool at_rest() const { return between_messages() && mode_ == Mode::Line && !end_pending_; }

  // Drops the current message (a synchronising literal that the server refused).
  void abandon_message();
  // Frees what is kept between messages (token and byte buffers) so that an idle
  // session holds none; a no-op inside a message. Views of the last event end here.
  void release_memory();

 private:
  enum class Mode : std::uint8_t { Line, InlineLiteral, StreamLiteral, Failed };

  // nullopt: the message goes on with an inline literal; read on.
  std::optional<Output> on_line_complete(const LinePartInfo& info, LineGrammar& grammar, std::string_view input);
  Output begin_rejection(ErrorCode code, std::optional<LiteralHeader> literal, bool line_complete,
                         LineGrammar& grammar, std::string_view input);
  Output skip_line(std::string_view& input, LineGrammar& grammar);
  void finish_message();
  void start_message_if_needed();
  void scan_skipped(std::string_view bytes);
  std::string_view unflushed() const;
  void set_tokens_text();

  const DecoderLimits& limits_;
  Tokenizer tokenizer_;
  Mode mode_ = Mode::Line;
  bool in_message_ = false;
  bool finished_ = false;       // the last step ended the message: reset on the next call
  bool rejecting_ = false;      // passing over a message rejected by a limit
  bool end_pending_ = false;    // a rejected message ends before the next input byte
  std::string buffer_;          // kept bytes of the current message when not parsed in place
  std::string_view message_;    // the message bytes (buffer_ or in place in the input)
  std::size_t part_start_ = 0;  // where the current line part begins in buffer_
  std::size_t flushed_ = 0;     // bytes of buffer_ already returned by Part steps
  std::vector<Token> tokens_;
  std::uint64_t remaining_ = 0; // literal payload still to come
  std::uint64_t literal_bytes_ = 0;
  std::uint64_t offset_ = 0;    // stream offset of the next input byte
  std::uint64_t message_offset_ = 0;
  // A rejected message: its first bytes, and the scanner state of a line being
  // skipped (quoting and the last bytes, enough to see a trailing literal header
  // without keeping the line). Made at a rejection, gone with the message.
  struct Rejection {
    std::string head;
    bool in_quote = false;
    bool escape = false;
    std::size_t line_length = 0;
    std::string tail;
    void restart_line() {
      in_quote = escape = false;
      line_length = 0;
      tail.clear();
    }
  };
  Rejection& rejection() {
    if (!rejection_) rejection_ = std::make_unique<Rejection>();
    return *rejection_;
  }
  std::unique_ptr<Rejection> rejection_;
};

}  // namespace imapscope::imap
