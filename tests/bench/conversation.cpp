#include "tests/bench/conversation.hpp"

#include <array>
#include <string_view>
#include <utility>

#include "tests/bench/bench_support.hpp"

namespace imapscope::bench {
namespace {

// Writes both sides in the order they happen, recording the causality gates.
class ConversationBuilder {
 public:
  std::string next_tag() { return cat("a", ++tag_); }
  void client(std::string_view line) {
    c_.client += cat(line, "\r\n");
    ++c_.client_messages;
  }
  void server(std::string_view line) {
    c_.server += cat(line, "\r\n");
    ++c_.server_messages;
    c_.gates.push_back({c_.client.size(), c_.server.size()});
  }
  void tagged_ok(std::string_view tag, std::string_view text) {
    server(cat(tag, " OK ", text));
    ++c_.tagged;
  }
  void count_idle() { ++c_.idles; }
  Conversation take() { return std::move(c_); }

 private:
  Conversation c_;
  unsigned tag_ = 0;
};

constexpr std::string_view kCapabilities =
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE "
    "SNIPPET=FUZZY PREVIEW=FUZZY LITERAL+ NOTIFY SPECIAL-USE";
constexpr std::array<std::string_view, 6> kFlags = {
    R"(\Seen)", R"(\Seen $NotJunk)", "", R"(\Answered \Seen)", R"(\Flagged \Seen)", R"(\Seen NonJunk)"};
// The header fields of a new message, as the server returns them.
constexpr std::string_view kHeaders =
    "From: Bob Example <bob@example.org>\r\n"
    "To: Alice Example <alice@example.com>\r\n"
    "Subject: Re: the quarterly figures, second draft\r\n"
    "Date: Sun, 22 Nov 2026 10:15:00 +0000\r\n"
    "Message-ID: <20261122101500.4711@example.org>\r\n"
    "In-Reply-To: <20261121094400.1234@example.com>\r\n"
    "References: <20261120080000.999@example.com> <20261121094400.1234@example.com>\r\n"
    "Content-Type: text/plain; charset=utf-8; format=flowed\r\n"
    "\r\n";
constexpr std::string_view kHeaderFields =
    "HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID REFERENCES IN-REPLY-TO CONTENT-TYPE)";

void select_inbox(ConversationBuilder& b, unsigned exists, unsigned uid_next) {
  const auto tag = b.next_tag();
  b.client(cat(tag, " SELECT INBOX (CONDSTORE)"));
  b.server(R"(* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $NotJunk NonJunk))");
  b.server(R"(* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $NotJunk NonJunk \*)] Flags permitted.)");
  b.server(cat("* ", exists, " EXISTS"));
  b.server("* 0 RECENT");
  b.server(cat("* OK [UNSEEN ", exists - 3, "] First unseen."));
  b.server("* OK [UIDVALIDITY 1700000000] UIDs valid");
  b.server(cat("* OK [UIDNEXT ", uid_next, "] Predicted next UID"));
  b.server(cat("* OK [HIGHESTMODSEQ ", 90000 + uid_next, "] Highest"));
  b.tagged_ok(tag, "[READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).");
}

void one_round(ConversationBuilder& b, unsigned& exists, unsigned& uid_next, bool reselect) {
  // Resynchronise the flags of the newest messages.
  auto tag = b.next_tag();
  b.client(cat(tag, " UID FETCH ", uid_next - 12, ":* (UID FLAGS)"));
  for (unsigned k = 0; k < 12; ++k) {
    b.server(cat("* ", exists - 11 + k, " FETCH (UID ", uid_next - 12 + k, " FLAGS (", kFlags[k % kFlags.size()],
                 "))"));
  }
  b.tagged_ok(tag, "Fetch completed (0.001 + 0.000 secs).");
  // The user reads a message.
  tag = b.next_tag();
  b.client(cat(tag, " UID STORE ", uid_next - 3, R"( +FLAGS (\Seen))"));
  b.server(cat("* ", exists - 2, " FETCH (UID ", uid_next - 3, " MODSEQ (", 90000 + uid_next, R"() FLAGS (\Seen)))"));
  b.tagged_ok(tag, "Store completed (0.001 + 0.000 secs).");
  tag = b.next_tag();
  b.client(cat(tag, " NOOP"));
  b.tagged_ok(tag, "NOOP completed (0.001 + 0.000 secs).");
  if (reselect) select_inbox(b, exists, uid_next);
  // Wait for new mail; one arrives. The client can't send DONE before the "+".
  tag = b.next_tag();
  b.client(cat(tag, " IDLE"));
  b.server("+ idling");
  b.count_idle();
  ++exists;
  b.server(cat("* ", exists, " EXISTS"));
  b.client("DONE");
  b.tagged_ok(tag, "Idle completed (0.001 + 29.998 secs).");
  // Fetch the new message's headers: a small literal, kept with its message.
  tag = b.next_tag();
  b.client(cat(tag, " UID FETCH ", uid_next, " (UID RFC822.SIZE FLAGS BODY.PEEK[", kHeaderFields, "])"));
  b.server(cat("* ", exists, " FETCH (UID ", uid_next, " RFC822.SIZE 4321 FLAGS () BODY[", kHeaderFields, "] {",
               kHeaders.size(), "}\r\n", kHeaders, ")"));
  b.tagged_ok(tag, "Fetch completed (0.001 + 0.000 secs).");
  ++uid_next;
}

}  // namespace

Conversation build_session(int rounds) {
  ConversationBuilder b;
  b.server(cat("* OK [CAPABILITY ", kCapabilities, "] Dovecot ready."));
  auto tag = b.next_tag();
  b.client(cat(tag, R"( LOGIN alice "correct horse battery staple")"));
  b.tagged_ok(tag, cat("[CAPABILITY ", kCapabilities, "] Logged in"));
  unsigned exists = 3000, uid_next = 40001;
  select_inbox(b, exists, uid_next);
  for (int round = 0; round < rounds; ++round) one_round(b, exists, uid_next, round % 8 == 7);
  tag = b.next_tag();
  b.client(cat(tag, " LOGOUT"));
  b.server("* BYE Logging out");
  b.tagged_ok(tag, "Logout completed (0.001 + 0.000 secs).");
  return b.take();
}

}  // namespace imapscope::bench
