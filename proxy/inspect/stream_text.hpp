// One direction of a session as text for a transcript: the line parts of each
// message with their CRLFs and literal payloads taken out ("{12}" stays), and each
// literal's size and SHA-256. Stateful across reads: a literal's payload may come
// in pieces, as part of the next line part, or as LiteralData events.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace imapscope::inspect {

struct LiteralDigest {
  std::uint64_t size = 0;
  std::string sha256;  // hex; empty when not hashed (credentials)
  std::string head;    // the first bytes of the payload, when bodies are captured
};

class StreamText {
 public:
  // body_cap: payload bytes kept per literal (0: none, only size and hash).
  explicit StreamText(std::size_t body_cap = 0);
  ~StreamText();
  StreamText(StreamText&&) noexcept;
  StreamText& operator=(StreamText&&) noexcept;

  // Bytes of the current message. hash: whether literal payloads are hashed (never
  // for credentials: a hash of a password is as good as the password to a dictionary).
  void add(std::string_view bytes, bool hash);
  // The message ended: its text and literals, and a fresh start.
  std::string take_text();
  std::vector<LiteralDigest> take_literals();
  bool empty() const { return text_.empty() && line_.empty() && literals_.empty() && remaining_ == 0; }
  // Gives back what a quiet stream doesn't need (the session went into IDLE): the
  // line buffer's capacity and the hash context; both come back with the next use.
  void release_memory();

 private:
  void finish_literal();

  std::string text_;
  std::string line_;            // the current line part, until its CRLF
  std::uint64_t remaining_ = 0;  // payload bytes of the current literal still to come
  std::vector<LiteralDigest> literals_;
  struct Hash;
  std::unique_ptr<Hash> hash_;  // of the current literal
  bool hashing_ = false;
  std::size_t body_cap_ = 0;
};

}  // namespace imapscope::inspect
