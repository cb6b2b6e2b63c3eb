// The shipped rules/clients.json against real opening sequences and ID strings,
// collected from the clients' public source code and published server logs (the
// source of each row is in the row). Credentials are placeholders.
#include <gtest/gtest.h>

#include <string>

#include "proxy/identify/identifier.hpp"
#include "proxy/session/session.hpp"

namespace imapscope::identify {
namespace {

struct Case {
  const char* name;
  const char* source;
  const char* commands;  // the client's first commands, as sent
  const char* family;
  IdMethod method;
  const char* version = "";
};

const Case kCases[] = {
    {"thunderbird_old", "nsImapProtocol.cpp: \"%u\" from 1, lower-case names; ID after login",
     "1 capability\r\n2 authenticate PLAIN dXNlcgB1c2VyAHBhc3M=\r\n", "thunderbird", IdMethod::Heuristic},
    {"thunderbird_random_start", "nsImapProtocol.cpp (current): first tag random 1..100",
     "57 capability\r\n58 login \"user\" \"pass\"\r\n59 ENABLE CONDSTORE\r\n", "thunderbird", IdMethod::Heuristic},
    {"thunderbird_id", "nsImapProtocol::ID()",
     "1 capability\r\n2 login \"user\" \"pass\"\r\n3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")\r\n",
     "thunderbird", IdMethod::Id, "115.3.1"},
    {"k9_id", "RealImapConnectionTest.kt: 3 ID (\"name\" \"AppName\" ...) after login",
     "1 CAPABILITY\r\n2 LOGIN \"user\" \"pass\"\r\n3 ID (\"name\" \"K-9 Mail\" \"version\" \"6.800\")\r\n",
     "thunderbird_android", IdMethod::Id, "6.800"},
    {"tfa_id", "app-thunderbird build.gradle.kts CLIENT_INFO_APP_NAME",
     "1 CAPABILITY\r\n2 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n3 ID (\"name\" \"Thunderbird for Android\" \"version\" \"12.1\")\r\n",
     "thunderbird_android", IdMethod::Id, "12.1"},
    {"apple_mail", "stalwart#1144 / wildduck#684 logs",
     "1.854 CAPABILITY\r\n2.854 ID (\"name\" \"Mac OS X Mail\" \"version\" \"16.0 (3696.100.31)\" \"os\" \"Mac OS X\" "
     "\"os-version\" \"12.4 (21F79)\" \"vendor\" \"Apple Inc.\")\r\n",
     "apple_mail", IdMethod::Id, "16.0"},
    {"apple_mail_before_id", "the same log, before its ID", "1.854 CAPABILITY\r\n", "apple_mail", IdMethod::Heuristic},
    {"ios_mail", "stalwart#1144 log",
     "1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n2 ID (\"name\" \"iPhone Mail\" \"version\" \"22C161\" \"os\" \"iOS\" "
     "\"os-version\" \"18.2.1 (22C161)\")\r\n",
     "ios_mail", IdMethod::Id, "18.2.1"},
    {"ios_mail_field_order", "test fixture with fields in another order",
     "A1 ID (\"version\" \"21B101\" \"os\" \"iOS\" \"name\" \"iPhone Mail\" \"os-version\" \"17.1.2 (21B101)\")\r\n",
     "ios_mail", IdMethod::Id, "17.1.2"},
    {"outlook_cloud", "modern-email/defects#49 log",
     "WIR00001 ID (\"name\" \"Microsoft Office 365\" \"version\" \"15.20.9160.4\" \"vendor\" \"Microsoft Corporation\" "
     "\"support-url\" \"https://support.microsoft.com/\")\r\nWIR00002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n",
     "outlook", IdMethod::Id, "15.20.9160.4"},
    {"outlook_tags", "the same log's tags without its ID", "WIR00001 CAPABILITY\r\nWIR00002 NOOP\r\n", "outlook",
     IdMethod::Heuristic},
    {"mutt", "mutt imap/command.c cmd_new(): a%04u from 0",
     "a0000 CAPABILITY\r\na0001 LOGIN \"user\" \"pass\"\r\na0002 LIST \"\" \"\"\r\n", "mutt", IdMethod::Heuristic},
    {"neomutt_second_connection", "neomutt imap/adata.c: a letter per connection", "b0000 CAPABILITY\r\nb0001 NOOP\r\n",
     "mutt", IdMethod::Heuristic},
    {"geary", "geary generate_tag(): %c%03d from a001, lower-case names", "a001 capability\r\na002 login user pass\r\n",
     "geary", IdMethod::Heuristic},
    {"alpine", "c-client imap4r1.c %08lx; alpine ID after login",
     "00000000 CAPABILITY\r\n00000001 LOGIN user pass\r\n00000002 ID (\"name\" \"alpine\" \"version\" \"2.26\")\r\n",
     "alpine", IdMethod::Id, "2.26"},
    {"alpine_before_id", "c-client imap4r1.c %08lx", "00000000 CAPABILITY\r\n", "alpine", IdMethod::Heuristic},
    {"fetchmail", "fetchmail transact.c GENSYM A%04d, capa_probe()",
     "A0001 CAPABILITY\r\nA0002 LOGIN \"user\" \"pass\"\r\nA0003 SELECT \"INBOX\"\r\n", "fetchmail", IdMethod::Heuristic},
    {"fetchmail_greeting_capabilities", "fetchmail 6.4.37 against Dovecot 2.3 (greeting with [CAPABILITY]), observed",
     "A0001 LOGIN \"bob\" \"pass\"\r\nA0002 SELECT \"INBOX\"\r\nA0003 LOGOUT\r\n", "fetchmail", IdMethod::Heuristic},
    {"roundcube", "rcube_imap_generic.php A%04d; no CAPABILITY when the greeting has it",
     "A0001 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nA0002 LIST \"\" \"*\"\r\n", "roundcube", IdMethod::Heuristic},
    {"roundcube_id", "rcube_imap_generic.php connect() with imap_debug",
     "A0001 ID (\"name\" \"Roundcube\" \"version\" \"1.6.5\" \"php\" \"8.2.7\" \"os\" \"Linux\" \"command\" \"/?_task=mail\")\r\n",
     "roundcube", IdMethod::Id, "1.6.5"},
    {"mailkit", "MailKit ImapCommand.cs {0}{1:D8}", "A00000000 CAPABILITY\r\nA00000001 NOOP\r\n", "mailkit",
     IdMethod::Heuristic},
    {"javamail", "Jakarta Mail Protocol.java tagPrefix + tagCounter from 0", "A0 CAPABILITY\r\nA1 NOOP\r\nA2 NOOP\r\n",
     "javamail", IdMethod::Heuristic},
    {"python_imaplib", "CPython imaplib.py Int2AP tag prefix, tagnum from 0, CAPABILITY in _connect()",
     "JGJD0 CAPABILITY\r\nJGJD1 LOGIN user pass\r\nJGJD2 SELECT INBOX\r\n", "python_imaplib", IdMethod::Heuristic},
    {"mbsync", "isync 1.4.4 (Debian 12) against Dovecot, mbsync -Dn: \"%d\" from 1, no CAPABILITY after implicit TLS",
     "1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n2 NAMESPACE\r\n3 LIST \"\" \"*\"\r\n", "mbsync", IdMethod::Heuristic},
    {"claws_mail", "/work/notes/clients/claws-mail.txt: Claws Mail 4.1.1 (libetpan), no ID",
     "1 CAPABILITY\r\n2 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n3 LIST \"\" \"\"\r\n4 LSUB \"\" \"%\"\r\n",
     "claws_mail", IdMethod::Heuristic},
    {"squirrelmail", "SquirrelMail 1.4 imap_general.php: A%03d from 1, LOGIN first",
     "A001 LOGIN \"user\" \"pass\"\r\nA002 SELECT \"INBOX\"\r\n", "squirrelmail", IdMethod::Heuristic},
    {"curl_is_no_family", "curl lib/imap.c: A001 CAPABILITY first (like no listed client)",
     "A001 CAPABILITY\r\nA002 LOGIN user pass\r\n", "unknown", IdMethod::Unknown},
    {"offlineimap_id", "/work/notes/clients/offlineimap.txt: offlineimap3 0.0~git20211018 (OfflineIMAP 8.0.0)",
     "EJFK1 CAPABILITY\r\nEJFK2 ID (\"name\" \"OfflineIMAP\" \"version\" \"8.0.0\")\r\n", "offlineimap", IdMethod::Id,
     "8.0.0"},
    {"offlineimap_before_id", "the same capture, before its ID", "EJFK1 CAPABILITY\r\n", "offlineimap",
     IdMethod::Heuristic},
    {"imaptest", "dovecot/imaptest commands.c \"%u.%u\" (global id, counter from 1): never apple_mail",
     "99.1 LOGIN \"user\" \"pass\"\r\n99.2 SELECT \"INBOX\"\r\n", "imaptest", IdMethod::Heuristic},
    {"imapfilter", "/work/notes/clients/imapfilter.txt: imapfilter 2.8.1, hex tags from 1000",
     "1000 CAPABILITY\r\n1001 STARTTLS\r\n1002 CAPABILITY\r\n", "imapfilter", IdMethod::Heuristic},
    {"dovecot_imapc", "dovecot/core imapc-connection.c imapc_connection_send_id()",
     "7 ID (\"name\" \"Dovecot\" \"x-session-ext-id\" \"dsync-1\")\r\n", "dovecot", IdMethod::Id},
    {"imapflow", "postalsys/imapflow lib/imap-flow.js startSession(): CAPABILITY, then ID",
     "1 CAPABILITY\r\n2 ID (\"name\" \"imapflow\" \"version\" \"1.0.171\" \"vendor\" \"Postal Systems\")\r\n",
     "imapflow", IdMethod::Id, "1.0.171"},
    {"aosp_email", "AOSP Email ImapStore.makeCommonImapId(): the package name",
     "1 CAPABILITY\r\n2 LOGIN \"user\" \"pass\"\r\n3 ID (\"name\" \"com.android.email\" \"os\" \"android\" "
     "\"os-version\" \"2.3.4; GRJ22\" \"vendor\" \"Google\")\r\n",
     "aosp_email", IdMethod::Id},
    {"ios_mail_ipad", "an iPad naming its OS iPadOS", "1 ID (\"name\" \"iPad Mail\" \"os\" \"iPadOS\" \"os-version\" \"17.4 (21E219)\")\r\n",
     "ios_mail", IdMethod::Id, "17.4"},
    {"thunderbird_vendor_prefix", "a name with a vendor prefix and another case",
     "1 ID (\"name\" \"Mozilla THUNDERBIRD\" \"version\" \"128.5.0esr\")\r\n", "thunderbird", IdMethod::Id,
     "128.5.0esr"},
    {"evolution", "camel-imapx-command.c %c%05u", "A00001 CAPABILITY\r\nA00002 NOOP\r\n", "evolution",
     IdMethod::Heuristic},
    {"unknown_shape", "no client tags like this", "t-1 NOOP\r\n", "unknown", IdMethod::Unknown},
    {"unlisted_client_id", "a client that names itself but is in no signature",
     "1 ID (\"name\" \"Some New Client\" \"version\" \"0.1\")\r\n", "other", IdMethod::Id, "0.1"},
    {"id_overrides_guess", "an ID that contradicts the heuristic guess wins (mutt-shaped tags, Thunderbird's ID)",
     "a0000 CAPABILITY\r\na0001 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\")\r\n", "thunderbird", IdMethod::Id,
     "115.3.1"},
};

class ShippedSignatures : public testing::TestWithParam<Case> {};

TEST_P(ShippedSignatures, RecogniseTheClient) {
  const Case& c = GetParam();
  const auto signatures = load_signatures(std::string(IMAPSCOPE_RULES_DIR) + "/clients.json");
  session::SessionSettings settings;
  settings.signatures = &signatures;
  session::Session session(settings);
  std::string_view greeting = "* OK [CAPABILITY IMAP4rev1 ID LITERAL+] ready\r\n";
  session.feed_server(greeting);
  // The server accepts every command, so a client waiting for a result (after
  // AUTHENTICATE) goes on as it would.
  std::string_view all = c.commands;
  while (!all.empty()) {
    const auto line_end = all.find("\r\n") + 2;
    std::string_view line = all.substr(0, line_end);
    all.remove_prefix(line_end);
    const std::string tag(line.substr(0, line.find(' ')));
    session.feed_client(line);
    ASSERT_TRUE(line.empty()) << line;
    const std::string answer = tag + " OK done\r\n";
    std::string_view ok = answer;
    session.feed_server(ok);
  }
  const auto& info = session.client();
  EXPECT_EQ(info.family, c.family) << c.source;
  EXPECT_EQ(info.method, c.method) << c.source;
  EXPECT_EQ(info.version, c.version) << c.source;
  if (c.method == IdMethod::Heuristic) {
    EXPECT_GE(info.confidence, signatures.min_confidence);
  }
}

INSTANTIATE_TEST_SUITE_P(Clients, ShippedSignatures, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<Case>& param) { return std::string(param.param.name); });

// ID read generously: other cases, vendor prefixes, version suffixes, other names
// of the same client. Each is the ID's field list as a client would send it.
struct Spelling {
  const char* fields;
  const char* family;
};

const Spelling kSpellings[] = {
    {"\"name\" \"OfflineIMAP\" \"version\" \"8.0.0\"", "offlineimap"},
    {"\"name\" \"offlineimap3\"", "offlineimap"},
    {"\"name\" \"Mozilla Thunderbird\" \"version\" \"128.5.0esr\"", "thunderbird"},
    {"\"name\" \"thunderbird\"", "thunderbird"},
    {"\"name\" \"Betterbird\"", "thunderbird"},
    {"\"name\" \"Thunderbird\" \"os\" \"Android\"", "thunderbird_android"},
    {"\"name\" \"K-9 Mail\" \"version\" \"6.800\"", "thunderbird_android"},
    {"\"name\" \"Thunderbird for Android\"", "thunderbird_android"},
    {"\"name\" \"iPhone Mail\" \"os\" \"iOS\"", "ios_mail"},
    {"\"name\" \"iPad Mail\" \"os\" \"iPadOS\"", "ios_mail"},
    {"\"name\" \"iOS Mail\"", "ios_mail"},
    {"\"name\" \"Mail\" \"os\" \"iPadOS\"", "ios_mail"},
    {"\"name\" \"Mac OS X Mail\"", "apple_mail"},
    {"\"name\" \"macOS Mail\"", "apple_mail"},
    {"\"name\" \"Microsoft Office 365\"", "outlook"},
    {"\"name\" \"Microsoft Outlook\"", "outlook"},
    {"\"name\" \"com.google.android.gm\"", "gmail_app"},
    {"\"name\" \"com.android.email\"", "aosp_email"},
    {"\"name\" \"com.samsung.android.email\"", "samsung_email"},
    {"\"name\" \"alpine\" \"version\" \"2.26\"", "alpine"},
    {"\"name\" \"Roundcube Webmail\"", "roundcube"},
    {"\"name\" \"eM Client\"", "em_client"},
    {"\"name\" \"imapflow\" \"vendor\" \"Postal Systems\"", "imapflow"},
    {"\"name\" \"Dovecot\" \"x-session-ext-id\" \"abc-1\"", "dovecot"},
    {"\"name\" \"doveadm\"", "dovecot"},
    {"\"name\" \"imaptest\"", "imaptest"},
    {"\"name\" \"IMAPClient\" \"version\" \"2.1.0\"", "python_imaplib"},
    {"\"name\" \"NeoMutt\"", "mutt"},
    {"\"name\" \"Claws Mail\"", "claws_mail"},
    {"\"name\" \"KEMI Mail\"", "other"},  // a fork of K-9 under its own name
    {"\"name\" \"Thunderbolt Mailer\"", "other"},  // a name that starts like one, but isn't
};

TEST(ShippedSignatures, IdIsReadGenerously) {
  const auto signatures = load_signatures(std::string(IMAPSCOPE_RULES_DIR) + "/clients.json");
  for (const auto& s : kSpellings) {
    session::SessionSettings settings;
    settings.signatures = &signatures;
    session::Session session(settings);
    std::string_view greeting = "* OK ready\r\n";
    session.feed_server(greeting);
    const std::string command = std::string("x1 ID (") + s.fields + ")\r\n";
    std::string_view in = command;
    session.feed_client(in);
    EXPECT_EQ(session.client().family, s.family) << s.fields;
    EXPECT_EQ(session.client().method, IdMethod::Id) << s.fields;
  }
}

TEST(ShippedSignatures, AnUnknownNameIsOtherWithTheNameKeptForTheLog) {
  const auto signatures = load_signatures(std::string(IMAPSCOPE_RULES_DIR) + "/clients.json");
  session::SessionSettings settings;
  settings.signatures = &signatures;
  session::Session session(settings);
  std::string_view greeting = "* OK ready\r\n";
  session.feed_server(greeting);
  std::string_view id = "x1 ID (\"name\" \"Odd \\\"Mailer\\\"\" \"version\" \"1\")\r\n";
  session.feed_client(id);
  EXPECT_EQ(session.client().family, "other");
  // Quotes and backslashes are replaced: the name goes into a quoted log field.
  EXPECT_EQ(session.client().id_name, "Odd ?Mailer?");
}

TEST(ShippedSignatures, TheBuiltInCopyIsTheShippedFile) {
  const auto file = load_signatures(std::string(IMAPSCOPE_RULES_DIR) + "/clients.json");
  const auto& builtin = builtin_signatures();
  EXPECT_EQ(builtin.families, file.families);
  EXPECT_EQ(builtin.id.size(), file.id.size());
  EXPECT_EQ(builtin.heuristics.size(), file.heuristics.size());
}

}  // namespace
}  // namespace imapscope::identify
