// Session playbooks: bytes in on one leg, bytes out on the legs, no sockets.
#include <gtest/gtest.h>

#include <string>

#include "proxy/session/capabilities.hpp"
#include "proxy/session/session.hpp"

namespace imapscope::session {
namespace {

struct Playbook {
  explicit Playbook(SessionSettings settings) : session(settings) {}

  std::string server(std::string_view bytes) {
    session.feed_server(bytes);
    EXPECT_TRUE(bytes.empty()) << "server bytes left: " << bytes;
    return take(session.to_client());
  }
  std::string client(std::string_view bytes) {
    session.feed_client(bytes);
    left = std::string(bytes);
    return take(session.to_server());
  }
  std::string to_client() { return take(session.to_client()); }
  static std::string take(std::string& s) {
    std::string out;
    out.swap(s);
    return out;
  }

  Session session;
  std::string left;
};

SessionSettings tls_leg() {
  SessionSettings s;
  s.client_leg.tls = true;
  return s;
}

SessionSettings plain_with_starttls() {
  SessionSettings s;
  s.client_leg.starttls_available = true;
  return s;
}

TEST(Capabilities, DescribeTheClientLeg) {
  ClientLegView plain{.tls = false, .starttls_available = true, .login_disabled_until_tls = false};
  ClientLegView tls{.tls = true, .starttls_available = false, .login_disabled_until_tls = false};
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 IDLE", plain), "IMAP4rev1 IDLE STARTTLS");
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 STARTTLS IDLE", plain), "IMAP4rev1 STARTTLS IDLE");
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 STARTTLS LOGINDISABLED IDLE", tls), "IMAP4rev1 IDLE");
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 AUTH=SCRAM-SHA-256 AUTH=SCRAM-SHA-256-PLUS AUTH=PLAIN", tls),
            "IMAP4rev1 AUTH=SCRAM-SHA-256 AUTH=PLAIN");
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 COMPRESS=DEFLATE IDLE", tls), "IMAP4rev1 IDLE");
  ClientLegView strict{.tls = false, .starttls_available = true, .login_disabled_until_tls = true};
  // No mechanism is offered while every AUTHENTICATE is refused (RFC 9051 §6.2.3).
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=SCRAM-SHA-256 ID", strict),
            "IMAP4rev1 SASL-IR ID STARTTLS LOGINDISABLED");
  ClientLegView strict_after_tls = strict;
  strict_after_tls.tls = true;
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 SASL-IR AUTH=PLAIN ID", strict_after_tls), "IMAP4rev1 SASL-IR AUTH=PLAIN ID");
  // Unchanged lists come back unchanged, byte for byte.
  EXPECT_EQ(rewrite_capabilities("IMAP4rev1 LITERAL+ ID", tls), "IMAP4rev1 LITERAL+ ID");
}

TEST(Session, UntouchedTrafficIsForwardedAsIs) {
  Playbook p(tls_leg());
  const std::string greeting = "* OK Dovecot ready.\r\n";
  EXPECT_EQ(p.server(greeting), greeting);
  const std::string login = "a1 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n";
  EXPECT_EQ(p.client(login), login);
  const std::string fetch = "* 1 FETCH (BODY[] {3}\r\nabc)\r\na2 OK done\r\n";
  EXPECT_EQ(p.server(fetch), fetch);
}

// An idle session gives its decoders back (0.7 KiB) and makes them again when bytes
// come: nothing between messages may be lost on the way, IDLE's DONE above all.
TEST(Session, DecodersAreGivenBackBetweenMessagesOnly) {
  Playbook p(tls_leg());
  EXPECT_FALSE(p.session.holds_decoders());
  EXPECT_EQ(p.server("* OK ready\r\n"), "* OK ready\r\n");
  EXPECT_TRUE(p.session.holds_decoders());
  p.session.release_memory();
  EXPECT_FALSE(p.session.holds_decoders());
  EXPECT_EQ(p.client("a1 LOGIN alice secret\r\n"), "a1 LOGIN alice secret\r\n");
  EXPECT_EQ(p.server("a1 OK Logged in\r\n"), "a1 OK Logged in\r\n");
  EXPECT_EQ(p.client("a2 IDLE\r\n"), "a2 IDLE\r\n");
  EXPECT_EQ(p.server("+ idling\r\n"), "+ idling\r\n");
  p.session.release_memory();
  EXPECT_FALSE(p.session.holds_decoders());
  EXPECT_EQ(p.server("* 3 EXISTS\r\n"), "* 3 EXISTS\r\n");
  p.session.release_memory();
  EXPECT_FALSE(p.session.holds_decoders());
  // Made again, the client's decoder still reads the line that ends IDLE as DONE.
  EXPECT_EQ(p.client("DONE\r\n"), "DONE\r\n");
  EXPECT_EQ(p.session.state().client_input(), imap::ClientInput::Commands);
  EXPECT_EQ(p.server("a2 OK Idle completed\r\n"), "a2 OK Idle completed\r\n");
  EXPECT_EQ(p.to_client(), "");  // nothing answered locally: no BAD for "DONE"
  EXPECT_TRUE(p.session.state().pending().empty());

  // Inside a message they stay: a synchronising literal waiting for "+" ...
  EXPECT_EQ(p.client("a3 APPEND INBOX {5}\r\n"), "a3 APPEND INBOX {5}\r\n");
  p.session.release_memory();
  EXPECT_TRUE(p.session.holds_decoders());
  EXPECT_EQ(p.server("+ go ahead\r\n"), "+ go ahead\r\n");
  p.session.release_memory();
  EXPECT_TRUE(p.session.holds_decoders());
  EXPECT_EQ(p.client("hello\r\n"), "hello\r\n");
  EXPECT_EQ(p.server("a3 OK Append completed\r\n"), "a3 OK Append completed\r\n");
  // ... and a server literal split between reads (a small one: kept, then
  // forwarded with its message).
  EXPECT_EQ(p.client("a4 FETCH 1 BODY[]\r\n"), "a4 FETCH 1 BODY[]\r\n");
  EXPECT_EQ(p.server("* 1 FETCH (BODY[] {10}\r\nabc"), "");
  p.session.release_memory();
  EXPECT_TRUE(p.session.holds_decoders());
  EXPECT_EQ(p.session.server_bytes_coming(), 7u);
  EXPECT_EQ(p.server("defghij)\r\na4 OK done\r\n"), "* 1 FETCH (BODY[] {10}\r\nabcdefghij)\r\na4 OK done\r\n");
  p.session.release_memory();
  EXPECT_FALSE(p.session.holds_decoders());
  EXPECT_EQ(p.session.server_bytes_coming(), 0u);
  EXPECT_TRUE(p.session.state().pending().empty());
}

TEST(Session, GreetingAndTaggedCapabilitiesDescribeTheClientLeg) {
  Playbook p(plain_with_starttls());
  EXPECT_EQ(p.server("* OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] ready\r\n"),
            "* OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] ready\r\n");
  p.client("a CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 AUTH=SCRAM-SHA-1-PLUS IDLE\r\na OK done\r\n"),
            "* CAPABILITY IMAP4rev1 IDLE STARTTLS\r\na OK done\r\n");
  p.client("b LOGIN u p\r\n");
  EXPECT_EQ(p.server("b OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] Logged in\r\n"),
            "b OK [CAPABILITY IMAP4rev1 STARTTLS] Logged in\r\n");
}

TEST(Session, GreetingCapabilitiesHiddenAfterUpstreamStarttls) {
  SessionSettings s;
  s.client_leg.tls = true;
  s.hide_greeting_capabilities = true;
  Playbook p(s);
  EXPECT_EQ(p.server("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] Dovecot ready.\r\n"),
            "* OK Dovecot ready.\r\n");
}

TEST(Session, ClientStarttlsIsAnsweredLocallyAndDropsPipelinedPlaintext) {
  Playbook p(plain_with_starttls());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("s1 STARTTLS\r\ns2 LOGIN alice secret\r\n"), "");  // the server sees nothing
  EXPECT_EQ(p.to_client(), "s1 OK Begin TLS negotiation now\r\n");
  EXPECT_TRUE(p.session.client_tls_requested());
  EXPECT_EQ(p.left, "s2 LOGIN alice secret\r\n");  // the relay drops this before the handshake
  p.session.client_tls_started();
  EXPECT_TRUE(p.session.client_leg().tls);
  EXPECT_EQ(p.client("s3 CAPABILITY\r\n"), "s3 CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 STARTTLS\r\ns3 OK done\r\n"), "* CAPABILITY IMAP4rev1\r\ns3 OK done\r\n");
}

TEST(Session, StarttlsRefusedWhereNotOffered) {
  Playbook p(tls_leg());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("s1 STARTTLS\r\n"), "");
  EXPECT_EQ(p.to_client(), "s1 BAD TLS is already active\r\n");
  EXPECT_EQ(p.client("s2 NOOP\r\n"), "s2 NOOP\r\n");
}

TEST(Session, CompressIsRefusedLocally) {
  Playbook p(tls_leg());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("c1 COMPRESS DEFLATE\r\nc2 NOOP\r\n"), "c2 NOOP\r\n");
  EXPECT_EQ(p.to_client(), "c1 NO [CANNOT] COMPRESS is not offered here\r\n");
}

TEST(Session, CompressOfferedAfterLoginAndTurnedOnLocally) {
  SessionSettings s = tls_leg();
  s.client_leg.compress_offered = true;
  Playbook p(s);
  // Before login: not listed (the server's own COMPRESS is always hidden), refused.
  EXPECT_EQ(p.server("* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] ready\r\n"), "* OK [CAPABILITY IMAP4rev1] ready\r\n");
  EXPECT_EQ(p.client("c0 COMPRESS DEFLATE\r\n"), "");
  EXPECT_EQ(p.to_client(), "c0 NO [CANNOT] COMPRESS is available after login\r\n");
  // After login the proxy's own COMPRESS=DEFLATE, whatever the server offers.
  p.client("c1 LOGIN alice secret\r\n");
  EXPECT_EQ(p.server("c1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
            "c1 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] Logged in\r\n");
  EXPECT_EQ(p.client("c2 COMPRESS ZSTD\r\n"), "");
  EXPECT_EQ(p.to_client(), "c2 BAD Only COMPRESS DEFLATE is supported\r\n");
  // The OK goes out in clear; what the client sent after COMPRESS waits (compressed).
  EXPECT_EQ(p.client("c3 COMPRESS DEFLATE\r\n\x01\x02" "compressed"), "");
  EXPECT_TRUE(p.session.client_compress_requested());
  EXPECT_EQ(p.session.client_compress_offset(), p.session.to_client().size());
  EXPECT_EQ(p.to_client(), "c3 OK DEFLATE active\r\n");
  EXPECT_EQ(p.left, "\x01\x02" "compressed");
  EXPECT_TRUE(p.session.client_blocked());
  // Server bytes go on meanwhile (the relay compresses them).
  EXPECT_EQ(p.server("* 2 EXISTS\r\n"), "* 2 EXISTS\r\n");
  p.session.client_compress_started();
  EXPECT_FALSE(p.session.client_blocked());
  EXPECT_EQ(p.client("c4 CAPABILITY\r\n"), "c4 CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\nc4 OK done\r\n"), "* CAPABILITY IMAP4rev1\r\nc4 OK done\r\n");
  EXPECT_EQ(p.client("c5 COMPRESS DEFLATE\r\n"), "");
  EXPECT_EQ(p.to_client(), "c5 NO [COMPRESSIONACTIVE] DEFLATE is active already\r\n");
}

TEST(Session, CompressWaitsForAQuietMoment) {
  SessionSettings s = tls_leg();
  s.client_leg.compress_offered = true;
  Playbook p(s);
  p.server("* PREAUTH ready\r\n");
  // A command still in progress: the switch would cut into its answer.
  EXPECT_EQ(p.client("f1 FETCH 1 FLAGS\r\nc1 COMPRESS DEFLATE\r\n"), "f1 FETCH 1 FLAGS\r\n");
  EXPECT_EQ(p.to_client(), "c1 NO [INUSE] Other commands are still in progress\r\n");
  EXPECT_FALSE(p.session.client_compress_requested());
}

TEST(Session, CompressTowardsTheServerAtTheFirstQuietMoment) {
  SessionSettings s = tls_leg();
  s.compress_upstream = true;
  Playbook p(s);
  p.server("* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] ready\r\n");
  EXPECT_EQ(p.client("c1 LOGIN alice secret\r\n"), "c1 LOGIN alice secret\r\n");
  // The login's answer goes to the client (without the server's COMPRESS); the proxy's
  // own COMPRESS goes to the server right after it.
  EXPECT_EQ(p.server("c1 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] Logged in\r\n"),
            "c1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
  EXPECT_EQ(Playbook::take(p.session.to_server()), "imapscope-z COMPRESS DEFLATE\r\n");
  // The client's next command waits until the server's leg has switched.
  EXPECT_EQ(p.client("c2 NOOP\r\n"), "");
  EXPECT_EQ(p.left, "c2 NOOP\r\n");
  std::string_view answer = "imapscope-z OK DEFLATE active\r\n\x78" "compressed";
  p.session.feed_server(answer);
  EXPECT_EQ(answer, "\x78" "compressed");  // for the relay to inflate
  EXPECT_EQ(p.to_client(), "");         // the client never sees the proxy's exchange
  EXPECT_TRUE(p.session.server_compress_requested());
  p.session.server_compress_started();
  EXPECT_TRUE(p.session.server_compressed());
  EXPECT_EQ(p.client("c2 NOOP\r\n"), "c2 NOOP\r\n");
  EXPECT_EQ(p.server("c2 OK done\r\n"), "c2 OK done\r\n");
}

TEST(Session, CompressTowardsTheServerRefusedOnce) {
  SessionSettings s = tls_leg();
  s.compress_upstream = true;
  Playbook p(s);
  // PREAUTH: the quiet moment is right after the greeting.
  p.server("* PREAUTH [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] ready\r\n");
  EXPECT_EQ(Playbook::take(p.session.to_server()), "imapscope-z COMPRESS DEFLATE\r\n");
  EXPECT_EQ(p.client("c1 NOOP\r\n"), "");  // waits for the answer
  EXPECT_EQ(p.server("imapscope-z NO not now\r\n"), "");
  EXPECT_FALSE(p.session.server_compress_requested());
  EXPECT_EQ(p.client("c1 NOOP\r\n"), "c1 NOOP\r\n");
  p.server("c1 OK done\r\n");
  EXPECT_EQ(Playbook::take(p.session.to_server()), "");  // not asked again
}

SessionSettings pass_through_leg() {
  SessionSettings s = tls_leg();
  s.client_leg.compress_offered = s.client_leg.compress_pass_through = true;
  return s;
}

// Logged in; the server offers COMPRESS=DEFLATE (or not).
void log_in(Playbook& p, bool server_offers) {
  p.server("* OK ready\r\n");
  p.client("c1 LOGIN alice secret\r\n");
  const std::string caps = server_offers ? "IMAP4rev1 IDLE COMPRESS=DEFLATE" : "IMAP4rev1 IDLE";
  // The client sees COMPRESS=DEFLATE either way: the proxy can always do its own.
  EXPECT_EQ(p.server("c1 OK [CAPABILITY " + caps + "] Logged in\r\n"),
            "c1 OK [CAPABILITY IMAP4rev1 IDLE COMPRESS=DEFLATE] Logged in\r\n");
}

TEST(Session, CompressPassedThroughToAServerThatOffersIt) {
  Playbook p(pass_through_leg());
  log_in(p, true);
  // The command goes to the server; what the client sends after it waits, compressed
  // or not depending on the answer.
  EXPECT_EQ(p.client("c2 COMPRESS DEFLATE\r\n\x01" "compressed"), "c2 COMPRESS DEFLATE\r\n");
  EXPECT_EQ(p.left, "\x01" "compressed");
  EXPECT_EQ(p.to_client(), "");
  EXPECT_TRUE(p.session.client_blocked());
  EXPECT_FALSE(p.session.client_compress_requested());  // not the proxy's own
  // The server's OK reaches the client as sent; its compressed bytes wait for the relay.
  std::string_view answer = "c2 OK Begin compression.\r\n\x78" "compressed";
  p.session.feed_server(answer);
  EXPECT_EQ(answer, "\x78" "compressed");
  EXPECT_EQ(p.to_client(), "c2 OK Begin compression.\r\n");
  EXPECT_TRUE(p.session.pass_through_accepted());
  EXPECT_FALSE(p.session.observing());
  p.session.pass_through_started();
  EXPECT_TRUE(p.session.observing());
  EXPECT_FALSE(p.session.client_blocked());
  // Observing: the relay forwards the compressed originals; the session queues
  // nothing, answers nothing itself and follows the state.
  EXPECT_EQ(p.client("c3 STARTTLS\r\n"), "");
  EXPECT_EQ(p.left, "");
  EXPECT_EQ(p.to_client(), "");  // no local answer: the server's is the one
  EXPECT_EQ(p.server("c3 BAD TLS is active\r\n* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE\r\n"), "");
  EXPECT_EQ(p.client("c4 COMPRESS DEFLATE\r\n"), "");
  EXPECT_EQ(p.server("c4 NO [COMPRESSIONACTIVE] Already\r\n"), "");
  EXPECT_FALSE(p.session.pass_through_accepted());
  // A literal waits for the server's "+".
  p.client("c5 APPEND INBOX {3}\r\n");
  EXPECT_TRUE(p.session.client_blocked());
  p.server("+ OK\r\n");
  EXPECT_FALSE(p.session.client_blocked());
  p.client("abc\r\n");
  EXPECT_EQ(p.left, "");
  EXPECT_EQ(p.session.commands_forwarded(), 5u);
}

TEST(Session, CompressOfTheProxyWhereTheServerCantOrWont) {
  {
    // The server doesn't offer it: the proxy's own.
    Playbook p(pass_through_leg());
    log_in(p, false);
    EXPECT_EQ(p.client("c2 COMPRESS DEFLATE\r\n"), "");
    EXPECT_EQ(p.to_client(), "c2 OK DEFLATE active\r\n");
    EXPECT_TRUE(p.session.client_compress_requested());
  }
  {
    // The server refuses: its answer reaches the client; a second try is the proxy's.
    Playbook p(pass_through_leg());
    log_in(p, true);
    EXPECT_EQ(p.client("c2 COMPRESS DEFLATE\r\n"), "c2 COMPRESS DEFLATE\r\n");
    EXPECT_EQ(p.server("c2 NO [CANNOT] Not now\r\n"), "c2 NO [CANNOT] Not now\r\n");
    EXPECT_FALSE(p.session.pass_through_accepted());
    EXPECT_FALSE(p.session.client_blocked());
    EXPECT_EQ(p.client("c3 COMPRESS DEFLATE\r\n"), "");
    EXPECT_EQ(p.to_client(), "c3 OK DEFLATE active\r\n");
  }
  {
    // A command in flight: the proxy answers [INUSE] as it would for its own.
    Playbook p(pass_through_leg());
    log_in(p, true);
    EXPECT_EQ(p.client("f1 FETCH 1 FLAGS\r\nc2 COMPRESS DEFLATE\r\n"), "f1 FETCH 1 FLAGS\r\n");
    EXPECT_EQ(p.to_client(), "c2 NO [INUSE] Other commands are still in progress\r\n");
  }
}

SessionSettings login_disabled_until_tls() {
  SessionSettings s = plain_with_starttls();
  s.client_leg.login_disabled_until_tls = true;
  return s;
}

TEST(Session, LoginDisabledUntilTls) {
  Playbook p(login_disabled_until_tls());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("l1 LOGIN alice secret\r\n"), "");
  EXPECT_EQ(p.to_client(), "l1 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n");
  // With a synchronising literal the refusal comes before the literal: nothing leaks.
  EXPECT_EQ(p.client("l2 LOGIN {5}\r\n"), "");
  EXPECT_EQ(p.to_client(), "l2 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n");
  EXPECT_FALSE(p.session.client_blocked());
  // A non-synchronising literal comes anyway: swallowed with its command.
  EXPECT_EQ(p.client("l3 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n"), "");
  EXPECT_EQ(p.to_client(), "l3 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n");
  EXPECT_EQ(p.client("l4 NOOP\r\n"), "l4 NOOP\r\n");
  EXPECT_EQ(p.session.commands_forwarded(), 1u);
  EXPECT_EQ(p.session.state().protocol_state(), imap::ProtocolState::NotAuthenticated);
}

TEST(Session, AuthenticateRefusedBeforeTlsWithAndWithoutInitialResponse) {
  Playbook p(login_disabled_until_tls());
  p.server("* OK ready\r\n");
  // SASL-IR (RFC 4959): the credentials are on the command line; none goes out.
  EXPECT_EQ(p.client("a1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"), "");
  EXPECT_EQ(p.to_client(), "a1 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n");
  // Without: no "+" is asked of the server, the client isn't left waiting for one.
  EXPECT_EQ(p.client("a2 AUTHENTICATE PLAIN\r\n"), "");
  EXPECT_EQ(p.to_client(), "a2 NO [PRIVACYREQUIRED] Use STARTTLS before logging in\r\n");
  EXPECT_FALSE(p.session.client_blocked());
  EXPECT_EQ(p.session.state().client_input(), imap::ClientInput::Commands);
  EXPECT_EQ(p.client("a3 NOOP\r\n"), "a3 NOOP\r\n");
}

TEST(Session, LoginDisabledIsAdvertisedUntilTlsAndLoginWorksAfterIt) {
  Playbook p(login_disabled_until_tls());
  EXPECT_EQ(p.server("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=LOGIN] ready\r\n"),
            "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED] ready\r\n");
  EXPECT_EQ(p.client("c1 CAPABILITY\r\n"), "c1 CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nc1 OK done\r\n"),
            "* CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED\r\nc1 OK done\r\n");
  EXPECT_EQ(p.client("s1 STARTTLS\r\n"), "");
  EXPECT_EQ(p.to_client(), "s1 OK Begin TLS negotiation now\r\n");
  p.session.client_tls_started();
  EXPECT_EQ(p.client("c2 CAPABILITY\r\n"), "c2 CAPABILITY\r\n");
  EXPECT_EQ(p.server("* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nc2 OK done\r\n"),
            "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\nc2 OK done\r\n");
  EXPECT_EQ(p.client("l1 LOGIN alice secret\r\n"), "l1 LOGIN alice secret\r\n");
  EXPECT_EQ(p.server("l1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n"),
            "l1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
  EXPECT_TRUE(p.session.state().logged_in());
}

TEST(Session, StarttlsAfterLoginIsBad) {
  // Plaintext login allowed (loopback, or the operator's choice): STARTTLS is still
  // valid only before login (RFC 9051 §6.2.1).
  Playbook p(plain_with_starttls());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("l1 LOGIN alice secret\r\n"), "l1 LOGIN alice secret\r\n");
  p.server("l1 OK Logged in\r\n");
  EXPECT_EQ(p.client("s1 STARTTLS\r\n"), "");
  EXPECT_EQ(p.to_client(), "s1 BAD STARTTLS is only valid before login\r\n");
  EXPECT_FALSE(p.session.client_tls_requested());
  EXPECT_FALSE(p.session.client_blocked());
  EXPECT_EQ(p.client("s2 NOOP\r\n"), "s2 NOOP\r\n");
}

TEST(Session, OverlongCommandGetsTaggedBadAndIsNotForwarded) {
  SessionSettings s = tls_leg();
  const imap::DecoderLimits limits{.max_line_length = 64};
  s.client_limits = &limits;
  Playbook p(s);
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("t1 SEARCH TEXT \"" + std::string(100, 'x') + "\"\r\nt2 NOOP\r\n"), "t2 NOOP\r\n");
  EXPECT_EQ(p.to_client(), "t1 BAD [TOOBIG] Command line too long\r\n");
}

TEST(Session, LocalAnswersWaitForTheServerMessageInFlight) {
  Playbook p(tls_leg());
  p.server("* OK ready\r\n");
  p.client("f1 FETCH 1 BODY[]\r\n");
  // Half a FETCH response is out; the refusal must not land inside it.
  EXPECT_EQ(p.server("* 1 FETCH (BODY[] {10000}\r\n" + std::string(5000, 'b')),
            "* 1 FETCH (BODY[] {10000}\r\n" + std::string(5000, 'b'));
  p.client("c1 COMPRESS DEFLATE\r\n");
  EXPECT_EQ(p.to_client(), "");
  EXPECT_EQ(p.server(std::string(5000, 'b') + ")\r\n"),
            std::string(5000, 'b') + ")\r\nc1 NO [CANNOT] COMPRESS is not offered here\r\n");
}

TEST(Session, ClientWaitsForServerContinuation) {
  Playbook p(tls_leg());
  p.server("* OK ready\r\n");
  EXPECT_EQ(p.client("a1 APPEND INBOX {5}\r\nhello\r\n"), "a1 APPEND INBOX {5}\r\n");
  EXPECT_TRUE(p.session.client_blocked());
  EXPECT_EQ(p.left, "hello\r\n");
  EXPECT_EQ(p.server("+ Ready\r\n"), "+ Ready\r\n");
  EXPECT_FALSE(p.session.client_blocked());
  EXPECT_EQ(p.client(p.left), "hello\r\n");
}

}  // namespace
}  // namespace imapscope::session
