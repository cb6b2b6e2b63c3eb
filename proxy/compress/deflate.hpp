// COMPRESS=DEFLATE (RFC 4978): each direction of a leg is one raw DEFLATE stream
// (RFC 1951, no zlib header). Sans-IO: bytes in, bytes out.
//
// Memory is what matters with thousands of sessions. The deflater's state (window
// and hash tables, ~70 KiB with the settings below) exists only while there is
// output to compress: after a sync flush the stream is at a block boundary, so
// release() can drop the state and the next compress() starts a fresh one whose
// blocks simply don't refer back (the peer's inflater can't tell). The inflater has
// to keep its 32 KiB window for as long as the peer's stream runs: the peer may
// refer back to anything it sent in the last 32 KiB.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace imapscope::compress {

class Deflater {
 public:
  Deflater();
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  // Appends input's compressed form to out, sync-flushed: the peer can inflate all
  // of it at once. Never fails short of out of memory (std::bad_alloc).
  void compress(std::string_view input, std::string& out);
  // Frees the state between bursts of output (the stream goes on after it).
  void release();
  bool holds_state() const { return state_ != nullptr; }

 private:
  struct State;
  std::unique_ptr<State> state_;
};

class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  // Inflates from the front of input into out, producing at most max_output bytes
  // (a small input can inflate a thousandfold); input keeps what is left. False
  // when the stream is broken, or when bytes follow its final block: error() says
  // why. A final block (the peer's Z_FINISH, e.g. at LOGOUT) is fine: finished().
  bool inflate(std::string_view& input, std::string& out, std::size_t max_output);
  const std::string& error() const { return error_; }
  bool finished() const { return finished_; }
  // The input consumed so far ends between two blocks, on a byte boundary (as after
  // the peer's sync flush): if no more input is waiting, a block of our own may be
  // put into the stream here (append_stored_block) and the inflater at the other
  // end reads it like the peer's.
  bool at_block_boundary() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
  std::string error_;
  bool finished_ = false;
};

// Appends data as DEFLATE stored blocks (RFC 1951 §3.2.4: no compression, so no
// reference to earlier bytes; not final). Valid only where the stream is at a block
// boundary, and the last thing put in it: the peer's later blocks may refer back
// 32 KiB and would then point into these bytes.
void append_stored_block(std::string_view data, std::string& out);

}  // namespace imapscope::compress
