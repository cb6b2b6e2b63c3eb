// Decodes the server→client stream; see command_decoder.hpp for the calling pattern.
// A response decoder blocks only while the transport changes (STARTTLS, COMPRESS; see
// SessionState::transport_change_pending): servers don't wait for continuations. Through the
// shared SessionState it releases the client's waits ("+", tagged results) and
// tracks the protocol state.
#pragma once

#include <string_view>
#include <vector>

#include "proxy/imap/events.hpp"
#include "proxy/imap/limits.hpp"
#include "proxy/imap/message_assembler.hpp"
#include "proxy/imap/response.hpp"
#include "proxy/imap/session_state.hpp"

namespace imapscope::imap {

class ResponseDecoder final : private LineGrammar {
 public:
  // limits must outlive the decoder (a session's are its listener's). offset: the
  // stream offset of the first input byte (a decoder made again; see at_rest()).
  explicit ResponseDecoder(SessionState& state, const DecoderLimits& limits = default_limits(),
                           std::uint64_t offset = 0);

  [[nodiscard]] Event next(std::string_view& input);
  // Frees buffers kept between messages (call when the stream goes quiet).
  void release_memory() {
    assembler_.release_memory();
    std::vector<Token>().swap(head_tokens_);
  }
  // Between messages with nothing carried over: a decoder made again with the same
  // SessionState at stream_offset() decodes the rest of the stream like this one.
  bool at_rest() const { return assembler_.at_rest(); }
  std::uint64_t stream_offset() const { return assembler_.stream_offset(); }

  // The current response: valid after MessagePart, Message and Error events, until the
  // next call of next().
  const Response& response() const { return response_; }
  const SessionState& state() const { return state_; }
  // Bytes the server will certainly send next: the rest of a literal it started (a
  // server never waits for a continuation).
  std::uint64_t literal_remaining() const { return assembler_.literal_remaining(); }

 private:
  // Where the parts of a text line (status, tagged, continuation) lie in the message.
  struct Span {
    std::uint32_t offset = 0, length = 0;
  };
  struct TextLine {
    Span tag, name, code, code_args, text;
  };

  LinePartInfo on_line_part(std::string_view message, std::size_t begin, std::size_t end, Tokenizer& tokenizer,
                            std::vector<Token>& tokens) override;
  bool literals_possible() const override { return !text_line_; }
  bool literals_can_wait() const override { return false; }

  // Decides from the first words whether the line is a text line (no literals).
  void classify(std::string_view line);
  void read_data_head(std::span<const Token> tokens);
  void resolve_text_line(std::string_view message);
  void apply_to_state();
  Event on_error(const MessageAssembler::Output& out);

  SessionState& state_;
  const DecoderLimits& limits_;
  MessageAssembler assembler_;
  Response response_;
  bool text_line_ = false;
  bool malformed_ = false;
  TextLine text_parts_;
  std::vector<Token> head_tokens_;
};

}  // namespace imapscope::imap
