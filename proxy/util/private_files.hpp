// Files the proxy writes hold what only the operator may read (transcripts with
// subjects and addresses, the admin token, the key of user labels, diagnostics
// state). They are made owner-only whatever the umask, never through a link, never
// under a name someone else could have planted, and only in folders nobody else
// can write to. Start-up and background threads only: errors are exceptions
// (std::runtime_error) whose message names the path and the reason.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace imapscope::util {

// The user the files belong to: the one the proxy runs as once it has dropped its
// privileges (set before any file is made), by default the current one. Files made
// while still root are handed to it, so that it can rotate and rewrite them later.
void set_private_owner(uid_t uid, gid_t gid);
uid_t private_owner_uid();

// Makes the folder (mode 0700; its parent must exist) or checks the one there: a
// real folder (not a link), owned by the owner, not writable by group or others.
void ensure_private_dir(const std::string& dir);

// The name asked for exists already (a file, or a link someone planted).
struct NameTaken : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws unless the current user can make and remove files in the folder: once
// the proxy has become another user, a parent folder may not let it through.
void check_usable_dir(const std::string& dir);

// A new file, mode 0600, owned by the owner; fails if the name exists (O_EXCL:
// NameTaken) and never follows a link (O_NOFOLLOW). Returns the open descriptor
// (O_CLOEXEC).
int create_private_file(const std::string& path);

// Replaces the file's content at once: a fresh owner-only file in the same folder
// (mkstemp), written, synced, then renamed over the name (a link there is replaced,
// not followed).
void replace_private_file(const std::string& path, std::string_view content);

// Reads a secret (its first line), refusing a link, a file of another owner or one
// that group or others can read; when the file doesn't exist, creates it with
// `random_bytes` random bytes, hex-encoded.
std::string load_or_create_secret(const std::string& path, std::size_t random_bytes);

// Reads a secret file given by the operator (its first line): refused when others
// can read it. Group-readable is allowed (a service group, as for TLS keys).
std::string read_secret_file(const std::string& path);

// `bytes` bytes from the kernel's random source, hex-encoded.
std::string random_hex(std::size_t bytes);

}  // namespace imapscope::util
