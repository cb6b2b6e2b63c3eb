// How precise the shipped heuristics are: every client's opening commands (up to its
// ID, if it sends one: after that ID decides), recorded through imapscope or
// reconstructed from the client's source, each citing where it comes from, replayed
// against every heuristic signature of rules/clients.json. After every command the
// guess must be the client's own family or "unknown", never another family. The
// confusion matrix of the final guesses is printed and must equal the one in
// rules/README.md, so the documented precision is the measured one.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/identify/identifier.hpp"
#include "proxy/session/session.hpp"

namespace imapscope::identify {
namespace {

struct Opening {
  const char* family;  // the client's true family; "unknown" for a client in no family
  const char* source;  // where these commands come from
  const char* commands;
};

// Credentials are placeholders. [REC] = recorded through imapscope or with the
// client's own debug output; [SRC] = reconstructed from the client's source.
const Opening kOpenings[] = {
    // Thunderbird: nsImapProtocol.cpp, lower-case capability/login/authenticate, ID after login.
    {"thunderbird", "[REC] /work/notes/clients/thunderbird.txt (Thunderbird 153.8.0esr): then ID",
     "18 authenticate PLAIN\r\n"},
    {"thunderbird", "[REC] the same capture, another connection: namespace before its ID",
     "78 authenticate PLAIN\r\n79 namespace\r\n"},
    {"thunderbird", "[SRC] nsImapProtocol.cpp Capability(), AuthLogin(): tags %u from a random 1..100",
     "57 capability\r\n58 authenticate PLAIN\r\n"},
    {"thunderbird", "[SRC] nsImapProtocol.cpp, STARTTLS first (greeting capabilities)",
     "1 STARTTLS\r\n2 capability\r\n3 login \"user\" \"pass\"\r\n"},
    // Thunderbird for Android / K-9: RealImapConnection.kt, numeric tags from 1, ID right after login.
    {"thunderbird_android", "[SRC] RealImapConnection.kt open(): greeting capabilities, SASL-IR, then ID",
     "1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n"},
    {"thunderbird_android", "[SRC] RealImapConnection.kt: CAPABILITY when the greeting has none, LOGIN",
     "1 CAPABILITY\r\n2 LOGIN \"user\" \"pass\"\r\n"},
    {"thunderbird_android", "[SRC] RealImapConnection.kt: STARTTLS, CAPABILITY, AUTHENTICATE, then ID",
     "1 STARTTLS\r\n2 CAPABILITY\r\n3 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n"},
    // Apple Mail: <counter>.<connection> tags, CAPABILITY then ID (published logs).
    {"apple_mail", "[LOG] stalwart#1144, wildduck#684: 1.854 CAPABILITY, then 2.854 ID", "1.854 CAPABILITY\r\n"},
    {"apple_mail", "[LOG] the same shape on a first connection (1.1): can't be told from imaptest", "1.1 CAPABILITY\r\n"},
    // iOS Mail: numeric tags, AUTHENTICATE then ID (published log).
    {"ios_mail", "[LOG] stalwart#1144: 1 AUTHENTICATE PLAIN, 2 ID", "1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n"},
    // Outlook's cloud sync: WIR tags; ID first, so its opening without ID (a server without ID).
    {"outlook", "[LOG] modern-email/defects#49, without its leading ID",
     "WIR00001 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nWIR00002 CAPABILITY\r\n"},
    // AOSP Email (and the Gmail/Samsung apps built on its code): CAPABILITY, LOGIN, then ID.
    {"aosp_email", "[SRC] AOSP Email ImapConnection.java open(): queryCapabilities(), doLogin(), then ID",
     "1 CAPABILITY\r\n2 LOGIN \"user\" \"pass\"\r\n"},
    // Evolution: camel-imapx "%c%05u".
    {"evolution", "[SRC] camel-imapx-server.c: CAPABILITY, AUTHENTICATE, NAMESPACE with %c%05u tags",
     "A00001 CAPABILITY\r\nA00002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nA00003 NAMESPACE\r\n"},
    // Geary: "%c%03d" from a001, lower-case names.
    {"geary", "[REC] /work/notes/clients/geary.txt (Geary 43.0): login in lower case, then upper-case LIST/NAMESPACE",
     "a001 login \"user\" \"pass\"\r\na002 LIST \"\" INBOX\r\na003 NAMESPACE\r\na004 LIST \"\" \"%\"\r\n"
     "a005 STATUS Queue (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)\r\n"},
    {"geary", "[SRC] geary imap-client-connection.vala generate_tag(), imap-client-session.vala",
     "a001 capability\r\na002 login \"user\" \"pass\"\r\na003 capability\r\na004 namespace\r\n"},
    // libetpan clients (Claws Mail, MailCore2): "%i" from 1, CAPABILITY first.
    {"claws_mail", "[REC] /work/notes/clients/claws-mail.txt (Claws Mail 4.1.1 on libetpan)",
     "1 CAPABILITY\r\n2 AUTHENTICATE PLAIN\r\n3 LIST \"\" \"\"\r\n4 LSUB \"\" \"%\"\r\n5 LIST \"\" \"INBOX\"\r\n"
     "6 LIST \"\" \"Trash\"\r\n"},
    {"mailcore", "[SRC] MailCore2 MCIMAPSession.cpp login(): mailimap_login, enableFeatures() (ENABLE QRESYNC), NAMESPACE",
     "1 LOGIN \"user\" \"pass\"\r\n2 ENABLE QRESYNC\r\n3 NAMESPACE\r\n"},
    {"mailcore", "[SRC] the same, capabilities neither in the greeting nor in the LOGIN answer",
     "1 CAPABILITY\r\n2 LOGIN \"user\" \"pass\"\r\n3 CAPABILITY\r\n4 ENABLE QRESYNC\r\n5 NAMESPACE\r\n"},
    // mutt and NeoMutt (recorded through imapscope).
    {"mutt", "[REC] /work/notes/clients/mutt.txt (mutt 2.2.12)",
     "a0000 STARTTLS\r\na0001 CAPABILITY\r\na0002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\na0003 CAPABILITY\r\n"
     "a0004 ENABLE UTF8=ACCEPT\r\na0005 LIST \"\" \"\"\r\n"},
    {"mutt", "[REC] /work/notes/clients/neomutt.txt (NeoMutt 20220429), its second connection's letter",
     "b0000 STARTTLS\r\nb0001 CAPABILITY\r\nb0002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nb0003 CAPABILITY\r\n"},
    // alpine: c-client %08lx.
    {"alpine", "[REC] /work/notes/clients/alpine.txt (alpine 2.26): AUTHENTICATE with SASL-IR, then ID",
     "00000000 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n"},
    {"alpine", "[SRC] c-client imap4r1.c imap_open(): CAPABILITY when the greeting has none",
     "00000000 CAPABILITY\r\n00000001 AUTHENTICATE PLAIN\r\n"},
    // Roundcube: A%04d, no CAPABILITY when the greeting has it.
    {"roundcube", "[SRC] rcube_imap_generic.php connect(), login(): AUTHENTICATE PLAIN, then the request",
     "A0001 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nA0002 LIST \"\" \"*\"\r\n"},
    {"roundcube", "[SRC] rcube_imap_generic.php connect(): CAPABILITY when the greeting has none",
     "A0001 CAPABILITY\r\nA0002 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nA0003 SELECT INBOX\r\n"},
    // SquirrelMail: A%03d from 1, LOGIN first.
    {"squirrelmail", "[SRC] SquirrelMail 1.4 functions/imap_general.php sqimap_session_id(), sqimap_login()",
     "A001 LOGIN \"user\" \"pass\"\r\nA002 SELECT \"INBOX\"\r\n"},
    {"squirrelmail", "[SRC] the same, a page that lists folders (NAMESPACE for the delimiter)",
     "A001 LOGIN \"user\" \"pass\"\r\nA002 NAMESPACE\r\nA003 LSUB \"\" \"*\"\r\n"},
    // MailKit: {0}{1:D8} from A00000000.
    {"mailkit", "[SRC] MailKit ImapClient.ConnectAsync/AuthenticateAsync, ImapCommand.cs tags",
     "A00000000 CAPABILITY\r\nA00000001 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\nA00000002 NAMESPACE\r\n"},
    // Jakarta Mail: tagPrefix + counter from 0, no padding.
    {"javamail", "[SRC] jakarta mail Protocol.java, IMAPProtocol: CAPABILITY, AUTHENTICATE/LOGIN",
     "A0 CAPABILITY\r\nA1 LOGIN user pass\r\nA2 CAPABILITY\r\n"},
    // mbsync (recorded with mbsync -Dn against the test Dovecot).
    {"mbsync", "[REC] isync 1.4.4, implicit TLS",
     "1 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n2 NAMESPACE\r\n3 LIST \"\" \"*\"\r\n4 SELECT \"INBOX\"\r\n"},
    {"mbsync", "[REC] isync 1.4.4, STARTTLS",
     "1 STARTTLS\r\n2 CAPABILITY\r\n3 AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n4 NAMESPACE\r\n5 LIST \"\" \"*\"\r\n"},
    // OfflineIMAP 8 (imaplib2), before its ID.
    {"offlineimap", "[REC] /work/notes/clients/offlineimap.txt (offlineimap3, OfflineIMAP 8.0.0)", "EJFK1 CAPABILITY\r\n"},
    // fetchmail.
    {"fetchmail", "[REC] fetchmail 6.4.37 against Dovecot (tests/integration/clients_test.py test_fetchmail)",
     "A0001 LOGIN \"bob\" \"pass\"\r\nA0002 SELECT \"INBOX\"\r\nA0003 LOGOUT\r\n"},
    {"fetchmail", "[SRC] fetchmail imap.c imap_capa_probe(): CAPABILITY first",
     "A0001 CAPABILITY\r\nA0002 LOGIN \"bob\" \"pass\"\r\nA0003 EXAMINE \"INBOX\"\r\n"},
    // imapfilter (recorded).
    {"imapfilter", "[REC] /work/notes/clients/imapfilter.txt (imapfilter 2.8.1)",
     "1000 CAPABILITY\r\n1001 STARTTLS\r\n1002 CAPABILITY\r\n1003 LOGIN \"user\" \"pass\"\r\n1004 CAPABILITY\r\n"
     "1005 NAMESPACE\r\n"},
    // Python imaplib and what is built on it.
    {"python_imaplib", "[REC] /work/notes/clients/getmail.txt (getmail6 on imaplib)",
     "HPPD0 CAPABILITY\r\nHPPD1 LOGIN user pass\r\nHPPD2 CAPABILITY\r\nHPPD3 EXAMINE INBOX\r\n"},
    {"python_imaplib", "[REC] imaplib as tests/integration/clients_test.py drives it",
     "JGJD0 CAPABILITY\r\nJGJD1 LOGIN user pass\r\nJGJD2 SELECT INBOX\r\n"},
    // imapflow: CAPABILITY, then ID.
    {"imapflow", "[SRC] imapflow lib/imap-flow.js startSession()", "1 CAPABILITY\r\n"},
    // Dovecot's imaptest and imapc.
    {"imaptest", "[SRC] imaptest commands.c \"%u.%u\" (client 99), LOGIN first", "99.1 LOGIN \"user\" \"pass\"\r\n99.2 SELECT \"INBOX\"\r\n"},
    {"imaptest", "[SRC] imaptest: CAPABILITY first when the greeting has none (client 3)",
     "3.1 CAPABILITY\r\n3.2 LOGIN \"user\" \"pass\"\r\n3.3 SELECT \"INBOX\"\r\n"},
    {"dovecot", "[SRC] imapc-connection.c: CAPABILITY, then ID before login (a global tag counter)", "12 CAPABILITY\r\n"},
    // A client in no family: curl's IMAP ("%c%03d", 'A' + connection id, from 1).
    {"unknown", "[SRC] curl lib/imap.c imap_sendf(): A001 CAPABILITY, A002 LOGIN, A003 SELECT",
     "A001 CAPABILITY\r\nA002 LOGIN user pass\r\nA003 SELECT INBOX\r\n"},
};

const Signatures& shipped() {
  static const Signatures s = load_signatures(std::string(IMAPSCOPE_RULES_DIR) + "/clients.json");
  return s;
}

// Feeds the opening command by command (the server answers each with OK) and calls
// seen() with the identification after each.
template <typename Seen>
void replay(const Opening& o, Seen seen) {
  session::SessionSettings settings;
  settings.signatures = &shipped();
  session::Session session(settings);
  std::string_view greeting = "* OK [CAPABILITY IMAP4rev1 ID LITERAL+ AUTH=PLAIN] ready\r\n";
  session.feed_server(greeting);
  std::string_view all = o.commands;
  while (!all.empty()) {
    const auto line_end = all.find("\r\n") + 2;
    std::string_view line = all.substr(0, line_end);
    all.remove_prefix(line_end);
    const std::string tag(line.substr(0, line.find(' ')));
    session.feed_client(line);
    ASSERT_TRUE(line.empty()) << o.source;
    seen(session.client(), tag);
    const std::string answer = tag + " OK done\r\n";
    std::string_view ok = answer;
    session.feed_server(ok);
  }
}

// Columns: every family a heuristic can name, in file order, then "unknown".
std::vector<std::string> columns() {
  std::vector<std::string> out;
  for (const auto& h : shipped().heuristics) {
    if (std::find(out.begin(), out.end(), h.family) == out.end()) out.push_back(h.family);
  }
  out.emplace_back(kUnknownFamily);
  return out;
}

std::string computed_matrix() {
  std::vector<std::string> rows;
  std::map<std::string, std::map<std::string, int>> counts;
  for (const auto& o : kOpenings) {
    if (std::find(rows.begin(), rows.end(), o.family) == rows.end()) rows.emplace_back(o.family);
    std::string last = std::string(kUnknownFamily);
    replay(o, [&](const ClientInfo& info, const std::string&) { last = info.family; });
    ++counts[o.family][last];
  }
  const auto cols = columns();
  std::ostringstream out;
  out << "| true \\ named |";
  for (const auto& c : cols) out << ' ' << c << " |";
  out << "\n|---|";
  for (std::size_t i = 0; i < cols.size(); ++i) out << "---|";
  out << '\n';
  for (const auto& r : rows) {
    out << "| " << r << " |";
    for (const auto& c : cols) {
      const int n = counts[r][c];
      out << ' ' << (n == 0 ? std::string(".") : std::to_string(n)) << " |";
    }
    out << '\n';
  }
  return out.str();
}

std::string readme_matrix() {
  std::ifstream in(std::string(IMAPSCOPE_RULES_DIR) + "/README.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  const std::string begin = "<!-- confusion-matrix:begin -->\n";
  const std::string end = "<!-- confusion-matrix:end -->";
  const auto b = all.find(begin);
  const auto e = all.find(end);
  if (b == std::string::npos || e == std::string::npos || e < b) return "(no matrix between the markers)";
  return all.substr(b + begin.size(), e - b - begin.size());
}

TEST(HeuristicPrecision, NoOpeningIsEverNamedAsAnotherFamily) {
  for (const auto& o : kOpenings) {
    replay(o, [&](const ClientInfo& info, const std::string& tag) {
      if (info.method != IdMethod::Heuristic) return;
      EXPECT_EQ(info.family, o.family) << "after " << tag << " of " << o.family << ": " << o.source
                                       << " (confidence " << info.confidence << ")";
    });
  }
}

TEST(HeuristicPrecision, EveryHeuristicSignatureNamesSomeOpeningOfItsFamily) {
  std::set<std::string> named;
  for (const auto& o : kOpenings) {
    std::string last;
    replay(o, [&](const ClientInfo& info, const std::string&) { last = info.family; });
    if (last == o.family) named.insert(last);
  }
  for (const auto& h : shipped().heuristics) {
    EXPECT_TRUE(named.count(h.family)) << h.family << ": no recorded or reconstructed opening names it";
  }
}

TEST(HeuristicPrecision, TheReadmeShowsTheMeasuredConfusionMatrix) {
  const auto computed = computed_matrix();
  std::cout << computed;
  EXPECT_EQ(readme_matrix(), computed)
      << "rules/README.md's confusion matrix differs from the measured one; put the table printed above "
         "between its <!-- confusion-matrix:begin --> and <!-- confusion-matrix:end --> lines";
}

}  // namespace
}  // namespace imapscope::identify
