// Closed sets of IMAP command names and response names. Anything outside them is
// Other, so the enums are safe to use as metric labels.
#pragma once

#include <cstdint>
#include <string_view>

namespace imapscope::imap {

// X-macro: one line per command; the string is the wire name (upper case).
// RFC 9051 / 3501 core, then extensions with the RFC that defines them.
#define IMAPSCOPE_VERBS(X)                                                          \
  X(Capability, "CAPABILITY")                                                       \
  X(Noop, "NOOP")                                                                   \
  X(Logout, "LOGOUT")                                                               \
  X(Starttls, "STARTTLS")                                                           \
  X(Authenticate, "AUTHENTICATE")                                                   \
  X(Login, "LOGIN")                                                                 \
  X(Select, "SELECT")                                                               \
  X(Examine, "EXAMINE")                                                             \
  X(Create, "CREATE")                                                               \
  X(Delete, "DELETE")                                                               \
  X(Rename, "RENAME")                                                               \
  X(Subscribe, "SUBSCRIBE")                                                         \
  X(Unsubscribe, "UNSUBSCRIBE")                                                     \
  X(List, "LIST")                                                                   \
  X(Lsub, "LSUB")                                                                   \
  X(Status, "STATUS")                                                               \
  X(Append, "APPEND")                                                               \
  X(Check, "CHECK")                                                                 \
  X(Close, "CLOSE")                                                                 \
  X(Expunge, "EXPUNGE")                                                             \
  X(Search, "SEARCH")                                                               \
  X(Fetch, "FETCH")                                                                 \
  X(Store, "STORE")                                                                 \
  X(Copy, "COPY")                                                                   \
  X(Namespace, "NAMESPACE")   /* RFC 2342 */                                        \
  X(Unselect, "UNSELECT")     /* RFC 3691 */                                        \
  X(Idle, "IDLE")             /* RFC 2177 */                                        \
  X(Enable, "ENABLE")         /* RFC 5161 */                                        \
  X(Move, "MOVE")             /* RFC 6851 */                                        \
  X(Id, "ID")                 /* RFC 2971 */                                        \
  X(Compress, "COMPRESS")     /* RFC 4978 */                                        \
  X(Xlist, "XLIST")           /* Gmail, before SPECIAL-USE (RFC 6154) */            \
  X(Notify, "NOTIFY")         /* RFC 5465 */                                        \
  X(Getmetadata, "GETMETADATA") /* RFC 5464 */                                      \
  X(Setmetadata, "SETMETADATA") /* RFC 5464 */                                      \
  X(Getquota, "GETQUOTA")     /* RFC 9208 */                                        \
  X(Getquotaroot, "GETQUOTAROOT")                                                   \
  X(Setquota, "SETQUOTA")                                                           \
  X(Getacl, "GETACL")         /* RFC 4314 */                                        \
  X(Setacl, "SETACL")                                                               \
  X(Deleteacl, "DELETEACL")                                                         \
  X(Listrights, "LISTRIGHTS")                                                       \
  X(Myrights, "MYRIGHTS")                                                           \
  X(Sort, "SORT")             /* RFC 5256 */                                        \
  X(Thread, "THREAD")                                                               \
  X(Esearch, "ESEARCH")       /* RFC 7377 multimailbox search */                    \
  X(Unauthenticate, "UNAUTHENTICATE") /* RFC 8437 */                                \
  X(Replace, "REPLACE")       /* RFC 8508 */                                        \
  X(Genurlauth, "GENURLAUTH") /* RFC 4467 */                                        \
  X(Resetkey, "RESETKEY")                                                           \
  X(Urlfetch, "URLFETCH")

enum class Verb : std::uint8_t {
#define IMAPSCOPE_VERB_ENUM(name, text) name,
  IMAPSCOPE_VERBS(IMAPSCOPE_VERB_ENUM)
#undef IMAPSCOPE_VERB_ENUM
  Other,  // any other command name; also a missing one
};

// Upper-case wire name; "OTHER" for Verb::Other. Stable: used as a metric label.
std::string_view verb_name(Verb v);
// Case-insensitive lookup of a command name ("uid" is not a verb: see Command::uid).
Verb verb_from_name(std::string_view name);

// Untagged response names (the atom after "* " or "* n "), RFC 9051 §7.
#define IMAPSCOPE_RESPONSE_NAMES(X) \
  X(Ok, "OK")                       \
  X(No, "NO")                       \
  X(Bad, "BAD")                     \
  X(Bye, "BYE")                     \
  X(Preauth, "PREAUTH")             \
  X(Capability, "CAPABILITY")       \
  X(Enabled, "ENABLED")             \
  X(List, "LIST")                   \
  X(Lsub, "LSUB")                   \
  X(Xlist, "XLIST")                 \
  X(Namespace, "NAMESPACE")         \
  X(Status, "STATUS")               \
  X(Esearch, "ESEARCH")             \
  X(Search, "SEARCH")               \
  X(Sort, "SORT")                   \
  X(Thread, "THREAD")               \
  X(Flags, "FLAGS")                 \
  X(Exists, "EXISTS")               \
  X(Recent, "RECENT")               \
  X(Expunge, "EXPUNGE")             \
  X(Fetch, "FETCH")                 \
  X(Vanished, "VANISHED")           \
  X(Id, "ID")                       \
  X(Metadata, "METADATA")           \
  X(Quota, "QUOTA")                 \
  X(Quotaroot, "QUOTAROOT")         \
  X(Acl, "ACL")                     \
  X(Listrights, "LISTRIGHTS")       \
  X(Myrights, "MYRIGHTS")

enum class ResponseName : std::uint8_t {
#define IMAPSCOPE_RESPONSE_ENUM(name, text) name,
  IMAPSCOPE_RESPONSE_NAMES(IMAPSCOPE_RESPONSE_ENUM)
#undef IMAPSCOPE_RESPONSE_ENUM
  Other,
};

std::string_view response_name(ResponseName n);
ResponseName response_name_from(std::string_view name);

}  // namespace imapscope::imap
