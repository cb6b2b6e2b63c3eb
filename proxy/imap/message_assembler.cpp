#include "proxy/imap/message_assembler.hpp"

#include <algorithm>
#include <cstring>

namespace imapscope::imap {
namespace {
// A literal header is at most "~{" + 19 digits + "+}" (23 bytes) after its SP or "(".
constexpr std::size_t kSkipTail = 32;
constexpr std::size_t kHeadBytes = 512;
// Buffers larger than this are released when a message ends, so an idle session
// keeps no memory from its largest message.
constexpr std::size_t kKeepBufferCapacity = 512;
constexpr std::size_t kKeepTokenCapacity = 16;  // a Token is ~56 bytes

std::size_t without_cr(std::string_view s, std::size_t begin, std::size_t lf) {
  return (lf > begin && s[lf - 1] == '\r') ? lf - 1 : lf;
}
}  // namespace

MessageAssembler::MessageAssembler(const DecoderLimits& limits, std::uint64_t offset)
    : limits_(limits), tokenizer_(limits.max_list_depth), offset_(offset), message_offset_(offset) {}

std::string_view MessageAssembler::unflushed() const {
  return std::string_view(buffer_).substr(std::min(flushed_, buffer_.size()));
}

void MessageAssembler::set_tokens_text() {
  for (auto& t : tokens_) t.text = message_.substr(t.offset, t.length);
}

void MessageAssembler::start_message_if_needed() {
  if (!in_message_) {
    in_message_ = true;
    message_offset_ = offset_;
    // After release_memory(): one allocation instead of growing 1, 2, 4, 8...
    if (tokens_.capacity() == 0) tokens_.reserve(kKeepTokenCapacity);
  }
}

void MessageAssembler::finish_message() {
  finished_ = false;
  in_message_ = false;
  rejecting_ = false;
  end_pending_ = false;
  buffer_.clear();
  if (buffer_.capacity() > kKeepBufferCapacity) std::string().swap(buffer_);
  tokens_.clear();
  if (tokens_.capacity() > kKeepTokenCapacity) std::vector<Token>().swap(tokens_);
  rejection_.reset();
  message_ = {};
  part_start_ = 0;
  flushed_ = 0;
  literal_bytes_ = 0;
  remaining_ = 0;
  tokenizer_.reset();
}

void MessageAssembler::release_memory() {
  if (finished_) finish_message();
  if (in_message_) return;
  std::string().swap(buffer_);
  std::vector<Token>().swap(tokens_);
  rejection_.reset();
}

void MessageAssembler::abandon_message() {
  if (mode_ != Mode::Failed) mode_ = Mode::Line;
  remaining_ = 0;
  finished_ = true;
}

MessageAssembler::Output MessageAssembler::next(std::string_view& input, LineGrammar& grammar) {
  if (finished_) finish_message();
  for (;;) {
    switch (mode_) {
      case Mode::Failed: {
        if (input.empty()) return {};
        const auto raw = input;
        offset_ += input.size();
        input = {};
        return {Step::Skipped, raw};
      }
      case Mode::StreamLiteral: {
        if (remaining_ == 0) {
          mode_ = Mode::Line;
          continue;
        }
        if (input.empty()) return {};
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
        const auto raw = input.substr(0, n);
        input.remove_prefix(n);
        offset_ += n;
        remaining_ -= n;
        if (remaining_ == 0) mode_ = Mode::Line;
        return {rejecting_ ? Step::Skipped : Step::LiteralData, raw};
      }
      case Mode::InlineLiteral: {
        if (remaining_ > 0) {
          if (input.empty()) return {};
          const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
          buffer_.append(input.data(), n);
          input.remove_prefix(n);
          offset_ += n;
          remaining_ -= n;
          if (remaining_ > 0) return {};
        }
        Token& literal = tokens_.back();
        const auto size = static_cast<std::size_t>(literal.literal.size);
        literal.has_content = true;
        literal.offset = static_cast<std::uint32_t>(buffer_.size() - size);
        literal.length = static_cast<std::uint32_t>(size);
        part_start_ = buffer_.size();
        message_ = buffer_;
        mode_ = Mode::Line;
        continue;
      }
      case Mode::Line:
        break;
    }

    if (rejecting_) return skip_line(input, grammar);
    if (input.empty()) return {};
    start_message_if_needed();
    const auto* lf = static_cast<const char*>(std::memchr(input.data(), '\n', input.size()));
    if (lf == nullptr) {
      if (buffer_.size() + input.size() > limits_.max_line_length) {
        return begin_rejection(ErrorCode::LineTooLong, std::nullopt, false, grammar, input);
      }
      buffer_.append(input);
      offset_ += input.size();
      input = {};
      return {};
    }
    const auto length = static_cast<std::size_t>(lf - input.data()) + 1;
    if (buffer_.size() + length > limits_.max_line_length) {
      return begin_rejection(ErrorCode::LineTooLong, std::nullopt, false, grammar, input);
    }
    if (buffer_.empty()) {
      // The common case: a whole message in the input. Parse it where it lies.
      message_ = input.substr(0, length);
      auto info = grammar.on_line_part(message_, 0, without_cr(message_, 0, length - 1), tokenizer_, tokens_);
      if (!info.literal && !info.error) {
        input.remove_prefix(length);
        offset_ += length;
        set_tokens_text();
        finished_ = true;
        return {Step::Complete, message_};
      }
      buffer_.assign(input.data(), length);  // token offsets stay valid: same start
      input.remove_prefix(length);
      offset_ += length;
      part_start_ = buffer_.size();
      message_ = buffer_;
      if (auto out = on_line_complete(info, grammar, input)) return *out;
      continue;
    }
    buffer_.append(input.data(), length);
    input.remove_prefix(length);
    offset_ += length;
    message_ = buffer_;
    auto info = grammar.on_line_part(message_, part_start_, without_cr(message_, part_start_, buffer_.size() - 1),
                                     tokenizer_, tokens_);
    part_start_ = buffer_.size();
    if (auto out = on_line_complete(info, grammar, input)) return *out;
  }
}

std::optional<MessageAssembler::Output> MessageAssembler::on_line_complete(const LinePartInfo& info,
                                                                         LineGrammar& grammar,
                                                                         std::string_view input) {
  if (info.error) return begin_rejection(*info.error, info.literal, true, grammar, input);
  if (!info.literal) {
    set_tokens_text();
    finished_ = true;
    const auto raw = unflushed();
    flushed_ = buffer_.size();
    return Output{Step::Complete, raw};
  }
  const LiteralHeader& literal = *info.literal;
  if (literal.size_overflow) return begin_rejection(ErrorCode::LiteralSizeOverflow, literal, true, grammar, input);
  if (literal.size > limits_.max_literal_size) {
    return begin_rejection(ErrorCode::LiteralTooBig, literal, true, grammar, input);
  }
  literal_bytes_ += literal.size;
  remaining_ = literal.size;
  const bool waits_for_continuation = literal.synchronizing && grammar.literals_can_wait();
  const bool keep = literal.size <= limits_.max_inline_literal &&
                    buffer_.size() + literal.size <= limits_.max_line_length;
  mode_ = keep ? Mode::InlineLiteral : Mode::StreamLiteral;
  if (keep && !waits_for_continuation) return std::nullopt;  // read the payload, go on
  set_tokens_text();
  const auto raw = unflushed();
  flushed_ = buffer_.size();
  return Output{Step::Part, raw};
}

MessageAssembler::Output MessageAssembler::begin_rejection(ErrorCode code, std::optional<LiteralHeader> literal,
                                                           bool line_complete, LineGrammar& grammar,
                                                           std::string_view input) {
  rejecting_ = true;
  // The head is the same whatever the reads were: a fixed number of the message's
  // first bytes, from what is kept and what has arrived.
  const std::size_t head_size = std::min(kHeadBytes, limits_.max_line_length);
  auto& head = rejection().head;
  head.assign(std::string_view(buffer_).substr(0, head_size));
  if (!line_complete) head.append(input.substr(0, head_size - head.size()));
  Output out{Step::Error, unflushed(), code};
  flushed_ = buffer_.size();
  if (code == ErrorCode::LiteralSizeOverflow) {
    mode_ = Mode::Failed;
    return out;
  }
  if (!line_complete) {
    // The line goes on in the input: carry its quoting and tail into the skip scanner.
    rejection().restart_line();
    scan_skipped(std::string_view(buffer_).substr(part_start_));
    return out;
  }
  if (literal && !(literal->synchronizing && grammar.literals_can_wait())) {
    remaining_ = literal->size;  // its payload follows at once: pass over it
    mode_ = Mode::StreamLiteral;
  } else {
    end_pending_ = true;  // the message ends here
  }
  return out;
}

void MessageAssembler::scan_skipped(std::string_view bytes) {
  auto& r = rejection();
  for (char c : bytes) {
    if (r.in_quote) {
      if (r.escape) {
        r.escape = false;
      } else if (c == '\\') {
        r.escape = true;
      } else if (c == '"') {
        r.in_quote = false;
      }
    } else if (c == '"') {
      r.in_quote = true;
    }
  }
  r.line_length += bytes.size();
  if (bytes.size() >= kSkipTail) {
    r.tail.assign(bytes.substr(bytes.size() - kSkipTail));
  } else {
    r.tail.append(bytes);
    if (r.tail.size() > kSkipTail) r.tail.erase(0, r.tail.size() - kSkipTail);
  }
}

MessageAssembler::Output MessageAssembler::skip_line(std::string_view& input, LineGrammar& grammar) {
  if (end_pending_) {
    end_pending_ = false;
    finished_ = true;
    return {Step::RejectedEnd, {}};
  }
  if (input.empty()) return {};
  const auto* lf = static_cast<const char*>(std::memchr(input.data(), '\n', input.size()));
  const std::size_t n = lf ? static_cast<std::size_t>(lf - input.data()) + 1 : input.size();
  const auto raw = input.substr(0, n);
  input.remove_prefix(n);
  offset_ += n;
  scan_skipped(lf ? raw.substr(0, n - 1) : raw);
  if (lf == nullptr) return {Step::Skipped, raw};

  std::optional<LiteralHeader> literal;
  auto& r = rejection();
  std::string_view tail = r.tail;
  if (!tail.empty() && tail.back() == '\r') tail.remove_suffix(1);
  if (!r.in_quote && grammar.literals_possible()) {
    auto found = parse_trailing_literal(tail);
    if (found && (found->start > 0 || r.line_length <= kSkipTail)) literal = found->header;
  }
  r.restart_line();
  if (literal && literal->size_overflow) {
    mode_ = Mode::Failed;
    return {Step::Skipped, raw};
  }
  if (!literal || (literal->synchronizing && grammar.literals_can_wait())) {
    finished_ = true;
    return {Step::RejectedEnd, raw};
  }
  remaining_ = literal->size;
  mode_ = Mode::StreamLiteral;
  return {Step::Skipped, raw};
}

}  // namespace imapscope::imap
