// Owner-only files: made so whatever the umask, never through a link, never over a
// name planted beforehand, only in folders nobody else can write to.
#include "proxy/util/private_files.hpp"
#include "tests/support/temp_paths.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

namespace imapscope::util {
namespace {

namespace fs = std::filesystem;

class PrivateFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = imapscope::testing::make_temp_dir("private-files-");
    old_umask_ = ::umask(0);  // the most permissive umask: modes must still be owner-only
  }
  void TearDown() override {
    ::umask(old_umask_);
    fs::remove_all(root_);
  }
  static unsigned mode_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  std::string root_;
  mode_t old_umask_ = 022;
};

TEST_F(PrivateFilesTest, FolderIsMadeOwnerOnlyAndCheckedWhenThere) {
  const auto dir = root_ + "/state";
  ensure_private_dir(dir);
  EXPECT_EQ(mode_of(dir), 0700u);
  ensure_private_dir(dir);  // there already, fine as it is

  ::chmod(dir.c_str(), 0770);
  EXPECT_THROW(ensure_private_dir(dir), std::runtime_error);
  ::chmod(dir.c_str(), 0757);
  EXPECT_THROW(ensure_private_dir(dir), std::runtime_error);
  ::chmod(dir.c_str(), 0755);  // readable by others is the operator's choice; writable is not
  EXPECT_NO_THROW(ensure_private_dir(dir));
}

TEST_F(PrivateFilesTest, FolderThroughALinkOrOfAnotherOwnerIsRefused) {
  const auto real = root_ + "/real";
  ensure_private_dir(real);
  const auto link = root_ + "/link";
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  try {
    ensure_private_dir(link);
    FAIL() << "a link was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("symbolic link"), std::string::npos) << e.what();
  }
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(real.c_str(), 12345, 12345), 0);
    try {
      ensure_private_dir(real);
      FAIL() << "a folder of another user was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("owned by user 12345"), std::string::npos) << e.what();
    }
  }
}

TEST_F(PrivateFilesTest, NewFileIsOwnerOnlyAndNeverReusesAPlantedName) {
  const auto path = root_ + "/a.jsonl";
  const int fd = create_private_file(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_THROW(create_private_file(path), std::runtime_error);  // exists: not reused

  // A link planted at the next name, pointing at a file the proxy must not touch.
  const auto victim = root_ + "/victim";
  std::ofstream(victim) << "keep me";
  const auto planted = root_ + "/b.jsonl";
  ASSERT_EQ(::symlink(victim.c_str(), planted.c_str()), 0);
  EXPECT_THROW(create_private_file(planted), std::runtime_error);
  EXPECT_EQ(read(victim), "keep me");
}

TEST_F(PrivateFilesTest, ReplacingWritesAFreshFileAndReplacesALinkInsteadOfFollowingIt) {
  const auto path = root_ + "/state.json";
  replace_private_file(path, "one");
  EXPECT_EQ(read(path), "one");
  EXPECT_EQ(mode_of(path), 0600u);
  replace_private_file(path, "two");
  EXPECT_EQ(read(path), "two");

  const auto victim = root_ + "/victim";
  std::ofstream(victim) << "keep me";
  fs::remove(path);
  ASSERT_EQ(::symlink(victim.c_str(), path.c_str()), 0);
  replace_private_file(path, "three");
  EXPECT_EQ(read(victim), "keep me");
  EXPECT_FALSE(fs::is_symlink(path));
  EXPECT_EQ(read(path), "three");
  EXPECT_EQ(mode_of(path), 0600u);
  // Nothing left behind but the two files.
  EXPECT_EQ(std::distance(fs::directory_iterator(root_), fs::directory_iterator()), 2);
}

TEST_F(PrivateFilesTest, SecretIsCreatedOnceThenReadBack) {
  const auto path = root_ + "/label-key";
  const auto secret = load_or_create_secret(path, 32);
  EXPECT_EQ(secret.size(), 64u);
  EXPECT_EQ(secret.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(load_or_create_secret(path, 32), secret);
  EXPECT_NE(load_or_create_secret(root_ + "/other", 32), secret);

  ::chmod(path.c_str(), 0640);  // the proxy's own secrets are owner-only
  EXPECT_THROW(load_or_create_secret(path, 32), std::runtime_error);
  ::chmod(path.c_str(), 0600);

  const auto link = root_ + "/link";
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  EXPECT_THROW(load_or_create_secret(link, 32), std::runtime_error);

  const auto short_one = root_ + "/short";
  replace_private_file(short_one, "abc\n");
  EXPECT_THROW(load_or_create_secret(short_one, 32), std::runtime_error);
}

TEST_F(PrivateFilesTest, OperatorSecretMayBeGroupReadableButNotWorldReadable) {
  const auto path = root_ + "/token";
  std::ofstream(path) << "0123456789abcdef0123\r\nsecond line\n";
  ::chmod(path.c_str(), 0640);
  EXPECT_EQ(read_secret_file(path), "0123456789abcdef0123");
  ::chmod(path.c_str(), 0644);
  EXPECT_THROW(read_secret_file(path), std::runtime_error);
}

}  // namespace
}  // namespace imapscope::util
