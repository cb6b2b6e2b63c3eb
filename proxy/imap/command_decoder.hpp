// Decodes the client→server stream. Sans-IO: the caller reads the socket and hands
// the bytes in; next() returns one event at a time and consumes input as it goes:
//
//   std::string_view input = bytes_read;
//   for (;;) {
//     Event ev = decoder.next(input);
//     if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
//     ... forward ev.raw, look at decoder.command() ...
//   }
//
// On Blocked the client waits for the server (see SessionState); the unconsumed input
// stays with the caller, who calls next() again once the ResponseDecoder has moved on.
// The decoder never writes anything itself: not even the "+" a server would send.
#pragma once

#include <string_view>
#include <vector>

#include "proxy/imap/command.hpp"
#include "proxy/imap/events.hpp"
#include "proxy/imap/limits.hpp"
#include "proxy/imap/message_assembler.hpp"
#include "proxy/imap/session_state.hpp"

namespace imapscope::imap {

class CommandDecoder final : private LineGrammar {
 public:
  // limits must outlive the decoder (a session's are its listener's). offset: the
  // stream offset of the first input byte (a decoder made again; see at_rest()).
  explicit CommandDecoder(SessionState& state, const DecoderLimits& limits = default_limits(),
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

  // The current command: valid after MessagePart, Message and Error events, until the
  // next call of next().
  const Command& command() const { return command_; }
  const SessionState& state() const { return state_; }

 private:
  enum class LineMode : std::uint8_t { Commands, IdleDone, SaslResponse };

  LinePartInfo on_line_part(std::string_view message, std::size_t begin, std::size_t end, Tokenizer& tokenizer,
                            std::vector<Token>& tokens) override;
  bool literals_possible() const override { return mode_ == LineMode::Commands; }
  bool literals_can_wait() const override { return true; }

  void read_head(std::span<const Token> tokens);
  void register_pending();
  void after_complete_command();
  Event on_error(const MessageAssembler::Output& out);

  SessionState& state_;
  const DecoderLimits& limits_;
  MessageAssembler assembler_;
  LineMode mode_ = LineMode::Commands;
  Command command_;
  bool registered_ = false;       // the current command is in the pending table
  bool malformed_ = false;
  bool tag_ok_ = false;           // the current command has a syntactically valid tag
  std::vector<Token> head_tokens_;  // tokens of a rejected command's head
};

}  // namespace imapscope::imap
