// Limits of one decoder. They bound memory per session: what a decoder keeps is at
// most max_line_length bytes (the message minus its streamed literals), whatever
// the size of the messages that pass through.
#pragma once

#include <cstddef>
#include <cstdint>

namespace imapscope::imap {

struct DecoderLimits {
  // Bytes of one message that are kept for parsing: its line parts plus inline
  // literals. 64 KiB is Dovecot's imap_max_line_length default.
  std::size_t max_line_length = 64 * 1024;
  // Largest literal accepted. Bigger ones are a LiteralTooBig error.
  std::uint64_t max_literal_size = std::uint64_t{4} << 30;
  // Largest literal before login (protocol state not authenticated): LOGIN and ID
  // need a few hundred bytes; an unauthenticated client gets no more than this.
  std::uint64_t max_literal_before_login = 64 * 1024;
  // Literals up to this size are kept with their message (so a LOGIN user name, a
  // mailbox name or an ID value can be read); larger ones stream through as chunks.
  std::size_t max_inline_literal = 4096;
  // Nesting of parenthesised lists (BODYSTRUCTURE of deeply nested MIME goes deep).
  unsigned max_list_depth = 100;
  // Longest tag; tags are kept in the pending-command table.
  std::size_t max_tag_length = 256;
  // Commands sent and not yet answered (pipelining depth).
  std::size_t max_pending_commands = 1000;
};

// The defaults, for decoders made without limits of their own.
inline const DecoderLimits& default_limits() {
  static const DecoderLimits defaults;
  return defaults;
}

}  // namespace imapscope::imap
