// Direct tests of the codec's pieces where a transcript can't show the property:
// protocol state, argument accessors, the name tables, views into the input.
#include <gtest/gtest.h>

#include <string>

#include "proxy/imap/command_decoder.hpp"
#include "proxy/imap/response_decoder.hpp"
#include "proxy/imap/tokenizer.hpp"

namespace imapscope::imap {
namespace {

// Feeds a whole direction and returns the number of Message events.
int feed(CommandDecoder& d, std::string_view input) {
  int messages = 0;
  for (;;) {
    const auto ev = d.next(input);
    if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
    messages += ev.kind == EventKind::Message;
  }
  return messages;
}
int feed(ResponseDecoder& d, std::string_view input) {
  int messages = 0;
  for (;;) {
    const auto ev = d.next(input);
    if (ev.kind == EventKind::NeedMore || ev.kind == EventKind::Blocked) break;
    messages += ev.kind == EventKind::Message;
  }
  return messages;
}

TEST(SessionState, FollowsLoginSelectCloseLogout) {
  SessionState state;
  CommandDecoder c(state);
  ResponseDecoder s(state);
  EXPECT_EQ(feed(s, "* OK ready\r\n"), 1);
  EXPECT_EQ(state.protocol_state(), ProtocolState::NotAuthenticated);
  feed(c, "1 LOGIN a b\r\n");
  feed(s, "1 OK done\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Authenticated);
  feed(c, "2 SELECT INBOX\r\n");
  feed(s, "2 OK [READ-WRITE] done\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Selected);
  feed(c, "3 SELECT nope\r\n");
  feed(s, "3 NO no such mailbox\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Authenticated);
  feed(c, "4 EXAMINE INBOX\r\n");
  feed(s, "4 OK [READ-ONLY] done\r\n");
  feed(c, "5 UNSELECT\r\n");
  feed(s, "5 OK done\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Authenticated);
  feed(c, "6 LOGOUT\r\n");
  feed(s, "* BYE bye\r\n6 OK done\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Logout);
  EXPECT_TRUE(state.pending().empty());
}

TEST(SessionState, PreauthGreetingAuthenticates) {
  SessionState state;
  ResponseDecoder s(state);
  feed(s, "* PREAUTH welcome\r\n");
  EXPECT_EQ(state.protocol_state(), ProtocolState::Authenticated);
}

TEST(SessionState, PipelinedTagsMatchOutOfOrder) {
  SessionState state;
  CommandDecoder c(state);
  ResponseDecoder s(state);
  EXPECT_EQ(feed(c, "a FETCH 1 FLAGS\r\nb UID SEARCH ALL\r\nc NOOP\r\n"), 3);
  EXPECT_EQ(state.pending().size(), 3u);
  std::string_view in = "b OK done\r\n";
  (void)s.next(in);
  EXPECT_TRUE(s.response().matched);
  EXPECT_EQ(s.response().command_verb, Verb::Search);
  EXPECT_TRUE(s.response().command_uid);
  ASSERT_EQ(state.pending().size(), 2u);
  EXPECT_EQ(state.pending()[0].tag, "a");
  EXPECT_EQ(state.pending()[1].tag, "c");
}

TEST(CommandDecoder, WholeMessageIsAViewIntoTheInput) {
  SessionState state;
  CommandDecoder c(state);
  const std::string bytes = "x1 LOGIN \"jo\\\"e\" {3+}\r\nabc\r\n";
  std::string_view in = bytes;
  // A literal makes the decoder keep the message; without one it parses in place.
  const std::string plain = "x2 NOOP\r\n";
  std::string_view plain_in = plain;
  const auto ev = c.next(plain_in);
  ASSERT_EQ(ev.kind, EventKind::Message);
  EXPECT_EQ(ev.raw.data(), plain.data());
  const auto ev2 = c.next(in);
  ASSERT_EQ(ev2.kind, EventKind::Message);
  EXPECT_EQ(ev2.raw, bytes);
  const auto& args = c.command().args;
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(args[0].string_value(), "jo\"e");
  EXPECT_EQ(args[1].string_value(), "abc");
  EXPECT_TRUE(in.empty());
}

TEST(CommandDecoder, StreamedLiteralChunksPointIntoTheInput) {
  SessionState state;
  const DecoderLimits limits{.max_inline_literal = 4};
  CommandDecoder c(state, limits);
  const std::string bytes = "a APPEND INBOX {10+}\r\n0123456789\r\n";
  std::string_view in = bytes;
  EXPECT_EQ(c.next(in).kind, EventKind::MessagePart);
  const auto chunk = c.next(in);
  ASSERT_EQ(chunk.kind, EventKind::LiteralData);
  EXPECT_EQ(chunk.raw, "0123456789");
  EXPECT_EQ(chunk.raw.data(), bytes.data() + 22);
  const auto end = c.next(in);
  ASSERT_EQ(end.kind, EventKind::Message);
  EXPECT_EQ(end.raw, "\r\n");
  EXPECT_EQ(c.command().literal_bytes, 10u);
  EXPECT_FALSE(c.command().args.back().has_content);
}

TEST(CommandDecoder, BlocksOnSynchronisingLiteralUntilContinuation) {
  SessionState state;
  CommandDecoder c(state);
  ResponseDecoder s(state);
  std::string_view in = "a LOGIN {3}\r\nbob pw\r\n";
  EXPECT_EQ(c.next(in).kind, EventKind::MessagePart);
  EXPECT_EQ(c.next(in).kind, EventKind::Blocked);
  EXPECT_EQ(in, "bob pw\r\n");  // nothing is read before the server's "+"
  std::string_view server = "+ go ahead\r\n";
  ASSERT_EQ(s.next(server).kind, EventKind::Message);
  EXPECT_EQ(s.response().continuation_for, ContinuationFor::Literal);
  const auto ev = c.next(in);
  ASSERT_EQ(ev.kind, EventKind::Message);
  EXPECT_EQ(c.command().args[0].string_value(), "bob");
}

TEST(CommandDecoder, ReleaseMemoryBetweenAndInsideMessages) {
  SessionState state;
  CommandDecoder c(state);
  std::string_view first = "a1 FETCH 1:* (FLAGS UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])\r\na2 NO";
  ASSERT_EQ(c.next(first).kind, EventKind::Message);
  EXPECT_EQ(c.next(first).kind, EventKind::NeedMore);  // "a2 NO" is kept, the message goes on
  c.release_memory();                                   // inside a message: keeps it
  std::string_view rest = "OP\r\n";
  ASSERT_EQ(c.next(rest).kind, EventKind::Message);
  EXPECT_EQ(c.command().tag, "a2");
  EXPECT_EQ(c.command().verb, Verb::Noop);
  c.release_memory();  // between messages: frees, and decoding goes on
  std::string_view third = "a3 LOGOUT\r\n";
  ASSERT_EQ(c.next(third).kind, EventKind::Message);
  EXPECT_EQ(c.command().verb, Verb::Logout);
}

// A session gives its decoders back between messages and makes them again where the
// stream stands: at rest only then, and error offsets go on from there.
TEST(CommandDecoder, AtRestOnlyBetweenMessagesAndMadeAgainAtItsOffset) {
  SessionState state;
  const DecoderLimits limits{.max_line_length = 32};
  CommandDecoder c(state, limits);
  EXPECT_TRUE(c.at_rest());
  std::string_view part = "a1 NOOP\r\na2 NO";
  ASSERT_EQ(c.next(part).kind, EventKind::Message);
  EXPECT_TRUE(c.at_rest());
  EXPECT_EQ(c.stream_offset(), 9u);
  EXPECT_EQ(c.next(part).kind, EventKind::NeedMore);
  EXPECT_FALSE(c.at_rest());  // "a2 NO" is kept
  std::string_view rest = "OP\r\n";
  ASSERT_EQ(c.next(rest).kind, EventKind::Message);
  EXPECT_TRUE(c.at_rest());
  ASSERT_EQ(c.stream_offset(), 18u);

  CommandDecoder again(state, limits, c.stream_offset());
  std::string_view too_long = "a3 SEARCH TEXT xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
  Event ev = again.next(too_long);
  ASSERT_EQ(ev.kind, EventKind::Error);
  EXPECT_EQ(ev.error.offset, 18u);
  EXPECT_FALSE(again.at_rest());  // the rejected line is still being passed over
}

// The relay's read low-water mark rests on this count: it must never exceed what the
// server still has to send, streamed or kept inline, in pieces or not.
TEST(ResponseDecoder, LiteralRemainingCountsWhatTheServerStillSends) {
  for (const std::size_t inline_limit : {std::size_t{4}, std::size_t{4096}}) {
    SessionState state;
    const DecoderLimits limits{.max_inline_literal = inline_limit};
    ResponseDecoder s(state, limits);
    EXPECT_EQ(s.literal_remaining(), 0u);
    std::string_view head = "* 1 FETCH (BODY[] {100}\r\n";
    while (!head.empty()) (void)s.next(head);
    EXPECT_EQ(s.literal_remaining(), 100u) << inline_limit;
    const std::string payload(30, 'x');
    std::string_view part = payload;
    while (!part.empty()) (void)s.next(part);
    EXPECT_EQ(s.literal_remaining(), 70u) << inline_limit;
    const std::string rest = std::string(70, 'y') + ")\r\n";
    EXPECT_EQ(feed(s, rest), 1) << inline_limit;
    EXPECT_EQ(s.literal_remaining(), 0u) << inline_limit;
  }
}

TEST(Tokenizer, TrailingLiteralNeedsATokenStart) {
  EXPECT_TRUE(parse_trailing_literal("a APPEND x {5}"));
  EXPECT_TRUE(parse_trailing_literal("(~{5+}"));
  EXPECT_TRUE(parse_trailing_literal("{0}"));
  EXPECT_FALSE(parse_trailing_literal("a SEARCH x{5}"));
  EXPECT_FALSE(parse_trailing_literal("a {5 }"));
  EXPECT_FALSE(parse_trailing_literal("a {}"));
  const auto big = parse_trailing_literal("a {99999999999999999999}");
  ASSERT_TRUE(big);
  EXPECT_TRUE(big->header.size_overflow);
  const auto plus = parse_trailing_literal("a ~{12+}");
  ASSERT_TRUE(plus);
  EXPECT_EQ(plus->header.size, 12u);
  EXPECT_FALSE(plus->header.synchronizing);
  EXPECT_TRUE(plus->header.binary);
}

TEST(Verbs, CaseInsensitiveClosedSet) {
  EXPECT_EQ(verb_from_name("fetch"), Verb::Fetch);
  EXPECT_EQ(verb_from_name("GetQuotaRoot"), Verb::Getquotaroot);
  EXPECT_EQ(verb_from_name("XYZZY"), Verb::Other);
  EXPECT_EQ(verb_from_name(""), Verb::Other);
  EXPECT_EQ(verb_from_name("AVERYVERYLONGCOMMANDNAME"), Verb::Other);
  EXPECT_EQ(verb_name(Verb::Other), "OTHER");
  for (int v = 0; v < static_cast<int>(Verb::Other); ++v) {
    EXPECT_EQ(verb_from_name(verb_name(static_cast<Verb>(v))), static_cast<Verb>(v));
  }
  EXPECT_EQ(response_name_from("esearch"), ResponseName::Esearch);
}

}  // namespace
}  // namespace imapscope::imap
