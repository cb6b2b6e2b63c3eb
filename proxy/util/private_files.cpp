#include "proxy/util/private_files.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace imapscope::util {
namespace {

uid_t owner_uid = ::geteuid();
gid_t owner_gid = ::getegid();

[[noreturn]] void fail(const std::string& path, const std::string& reason) {
  throw std::runtime_error(path + ": " + reason);
}

std::string errno_text(int error) { return std::strerror(error); }

// Closes a descriptor on every path out.
struct Descriptor {
  int fd = -1;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    const int out = fd;
    fd = -1;
    return out;
  }
};

// Made by root for the user it will become: handed over now, while it still may.
void hand_to_owner(int fd, const std::string& path) {
  if (::geteuid() == 0 && owner_uid != 0 && ::fchown(fd, owner_uid, owner_gid) != 0) {
    fail(path, "can't give it to user " + std::to_string(owner_uid) + " (" + errno_text(errno) + ")");
  }
}

void write_all(int fd, std::string_view content, const std::string& path) {
  while (!content.empty()) {
    const auto n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(path, "can't write (" + errno_text(errno) + ")");
    content.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::string first_line(int fd, const std::string& path) {
  std::string text;
  char buffer[512];
  for (;;) {
    const auto n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail(path, "can't read (" + errno_text(errno) + ")");
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > 64 * 1024) fail(path, "is too large for a secret");
  }
  text = text.substr(0, text.find('\n'));
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

void set_private_owner(uid_t uid, gid_t gid) {
  owner_uid = uid;
  owner_gid = gid;
}

uid_t private_owner_uid() { return owner_uid; }

void ensure_private_dir(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("a folder path is empty");
  if (::mkdir(dir.c_str(), 0700) == 0) {
    // mkdir's mode is cut by the umask: 0700 can only lose bits, but say it anyway.
    Descriptor d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (d.fd < 0) fail(dir, "can't open the folder just made (" + errno_text(errno) + ")");
    if (::fchmod(d.fd, 0700) != 0) fail(dir, "can't make it owner-only (" + errno_text(errno) + ")");
    hand_to_owner(d.fd, dir);
    return;
  }
  if (errno != EEXIST) fail(dir, "can't create the folder (" + errno_text(errno) + ")");
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) fail(dir, "can't read it (" + errno_text(errno) + ")");
  if (S_ISLNK(st.st_mode)) fail(dir, "is a symbolic link: give the real folder");
  if (!S_ISDIR(st.st_mode)) fail(dir, "is not a folder");
  if (st.st_uid != owner_uid) {
    fail(dir, "is owned by user " + std::to_string(st.st_uid) + ", not by user " + std::to_string(owner_uid) +
                  " that imapscope runs as (chown it, or choose another folder)");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    fail(dir, "is writable by its group or by others: another user could plant files there (chmod go-w)");
  }
}

void check_usable_dir(const std::string& dir) {
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    fail(dir, "user " + std::to_string(::geteuid()) + " can't make files there (" + errno_text(errno) +
                  "): does every parent folder let it through?");
  }
}

int create_private_file(const std::string& path) {
  Descriptor d{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
  if (d.fd < 0 && errno == EEXIST) throw NameTaken(path + ": exists already (a file or link of someone else's?): not reused");
  if (d.fd < 0) fail(path, "can't create (" + errno_text(errno) + ")");
  if (::fchmod(d.fd, 0600) != 0) fail(path, "can't make it owner-only (" + errno_text(errno) + ")");
  hand_to_owner(d.fd, path);
  return d.release();
}

void replace_private_file(const std::string& path, std::string_view content) {
  std::string temp = path + ".XXXXXX";
  std::vector<char> name(temp.begin(), temp.end());
  name.push_back('\0');
  Descriptor d{::mkostemp(name.data(), O_CLOEXEC)};  // 0600, O_EXCL, a fresh name
  if (d.fd < 0) fail(path, "can't create a file next to it (" + errno_text(errno) + ")");
  temp.assign(name.data());
  try {
    if (::fchmod(d.fd, 0600) != 0) fail(temp, "can't make it owner-only (" + errno_text(errno) + ")");
    hand_to_owner(d.fd, temp);
    write_all(d.fd, content, temp);
    if (::fsync(d.fd) != 0) fail(temp, "can't sync (" + errno_text(errno) + ")");
    if (::rename(temp.c_str(), path.c_str()) != 0) fail(path, "can't replace (" + errno_text(errno) + ")");
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
}

std::string load_or_create_secret(const std::string& path, std::size_t random_bytes) {
  Descriptor d{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
  if (d.fd < 0 && errno == ENOENT) {
    const auto secret = random_hex(random_bytes);
    Descriptor created{create_private_file(path)};
    write_all(created.fd, secret + "\n", path);
    if (::fsync(created.fd) != 0) fail(path, "can't sync (" + errno_text(errno) + ")");
    return secret;
  }
  if (d.fd < 0) {
    fail(path, errno == ELOOP ? "is a symbolic link: not followed" : "can't open (" + errno_text(errno) + ")");
  }
  struct stat st {};
  if (::fstat(d.fd, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "is not a regular file");
  if (st.st_uid != owner_uid) {
    fail(path, "is owned by user " + std::to_string(st.st_uid) + ", not by user " + std::to_string(owner_uid));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) fail(path, "can be read or written by group or others (chmod 600)");
  auto secret = first_line(d.fd, path);
  if (secret.size() < 16) fail(path, "holds fewer than 16 characters: not a secret");
  return secret;
}

std::string read_secret_file(const std::string& path) {
  Descriptor d{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (d.fd < 0) fail(path, "can't open (" + errno_text(errno) + ")");
  struct stat st {};
  if (::fstat(d.fd, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "is not a regular file");
  if ((st.st_mode & S_IROTH) != 0) fail(path, "can be read by every local user (chmod o-r)");
  return first_line(d.fd, path);
}

std::string random_hex(std::size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  std::size_t filled = 0;
  while (filled < bytes) {
    const auto n = ::getrandom(raw.data() + filled, bytes - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("no random bytes from the kernel (" + errno_text(errno) + ")");
    filled += static_cast<std::size_t>(n);
  }
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (const auto b : raw) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

}  // namespace imapscope::util
