#include "proxy/diagnose/findings.hpp"

#include <array>

namespace imapscope::diagnose {
namespace {

constexpr std::array<FindingText, kFindingKinds> kTexts = {{
    {"uidvalidity_changed",
     "The mailbox's UIDVALIDITY differs from what this user's earlier session saw: every client must throw away "
     "its cache of the mailbox and download it again.",
     "Find out why the server renumbered the mailbox: it was deleted and recreated (by a client or a script), "
     "restored from a backup, migrated, or its index was rebuilt. A stable server keeps UIDVALIDITY for good."},
    {"full_resync",
     "The client fetched the flags of a whole mailbox (FETCH 1:* (UID FLAGS)): a very large mailbox, or a large one "
     "again and again, megabytes fetched again within the hour. Bandwidth and server work grow with the mailbox, not "
     "with what changed.",
     "Offer CONDSTORE/QRESYNC on the server and use a client version that uses them; check that the client keeps "
     "its cache (a profile that is reset, a cache that doesn't fit, UIDVALIDITY changes)."},
    {"idle_churn",
     "The client ends IDLE within a short time without having been told of any change, only to send IDLE again, "
     "over and over: it pays a round trip and a wake-up each time instead of waiting.",
     "Raise the client's IDLE refresh interval (up to 29 minutes, RFC 2177), or check what wakes it (keepalives, "
     "a NAT that drops quiet connections)."},
    {"keepalive_wakeups",
     "The client ends IDLE right after the server's keepalive (\"* OK Still here\"), time after time: each "
     "keepalive wakes the device and costs a round trip (seed: K-9 Mail with Dovecot's 2-minute keepalive).",
     "Send keepalives less often: Dovecot's imap_idle_notify_interval, or per client family with the rule action "
     "\"thin_keepalives_s\" in imapscope."},
    {"idle_without_select",
     "The client sent IDLE with no mailbox selected: the server has nothing to report, the connection is idle "
     "for nothing.",
     "A client bug or a misconfigured push folder: select the folder to watch before IDLE."},
    {"connection_per_folder",
     "The user's client keeps one connection per folder in IDLE (K-9 Mail's push of several folders): many "
     "connections and server processes per user.",
     "Push only the folders that matter (INBOX), or use a client with NOTIFY support; raise the server's per-user "
     "connection limit if the folders are needed."},
    {"user_connection_limit",
     "The user has as many concurrent connections as the server's per-user limit allows, or nearly: new "
     "connections (another device, another folder) will be refused.",
     "Close idle clients or folders kept in IDLE, or raise the server's limit (Dovecot: "
     "mail_max_userip_connections) and imapscope's user_connection_limit with it."},
    {"error_loop",
     "The client repeats a command that the server refuses (NO/BAD), e.g. a line other than DONE during IDLE "
     "(\"BAD Expected DONE\"): it doesn't learn from the answer.",
     "Look at the refused command in the transcript: a client bug (update it), a missing mailbox, a quota, or a "
     "server setting the client doesn't expect."},
    {"login_failure_storm",
     "Many failed logins from one address in a short time: a client with a stale password retrying, or someone "
     "guessing passwords.",
     "Update the stored password on the device; if it's not a known device, block the address (fail2ban, "
     "Dovecot's auth_policy)."},
    {"deleted_build_up",
     "Many messages are flagged \\Deleted but never expunged (Outlook's behaviour without a purge): they still "
     "take quota and are still fetched and synced.",
     "Purge deleted items in the client (Outlook: Edit > Purge Deleted Messages, or the purge option on switching "
     "folders), or expunge on the server."},
    {"polling_instead_of_idle",
     "The client repeats the same NOOP or STATUS at short intervals although the server offers IDLE: constant "
     "traffic and server work, and news arrives late anyway.",
     "Turn on push/IDLE in the client, or lower its check frequency; for Outlook, turn off \"get folder unread "
     "count for subscribed folders\"."},
    {"inactivity_timeout",
     "The session ended after a long silence without LOGOUT: an inactivity timeout of the server (about 30 "
     "minutes), of imapscope, or of a NAT or firewall on the way (often 15 minutes) cut it.",
     "Clients should re-issue IDLE (or NOOP) well within the shortest timeout on the path: every 29 minutes for "
     "the server, under 15 for a NAT; on mobile networks, check the carrier's NAT timeout."},
}};

}  // namespace

const FindingText& finding_text(FindingKind kind) { return kTexts[static_cast<std::size_t>(kind)]; }

}  // namespace imapscope::diagnose
