// The parent's side of ~/.forward: which homes and files it hands lookup, and which it refuses
// (with the reason lookup logs), on a home made in a temporary directory.
#include "smtpd/forward_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace postern::smtpd {
namespace {

// Ownership cases chown to this uid: an account that is neither the user nor root.
constexpr uid_t kOtherUid = 4242;
constexpr uid_t kUserUid = 4343;

class ForwardFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/postern-forward-XXXXXX";
    ASSERT_NE(mkdtemp(templ), nullptr);
    root_ = templ;
    home_ = root_ + "/home";
    ASSERT_EQ(mkdir(home_.c_str(), 0755), 0);
    forward_ = home_ + "/.forward";
  }
  void TearDown() override { (void)std::system(("rm -rf '" + root_ + "'").c_str()); }

  // As the user who runs the test (no fsuid switch needed for one's own files).
  ForwardAccount self() const {
    return {.name = "me", .uid = getuid(), .gid = getgid(), .home = home_};
  }
  void write_forward(const std::string& text, mode_t mode = 0644) const {
    UniqueFd fd(open(forward_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    ASSERT_TRUE(fd);
    ASSERT_EQ(write(fd.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ASSERT_EQ(chmod(forward_.c_str(), mode), 0);
  }
  static void expect_refused(const ForwardOpened& got, const std::string& reason) {
    EXPECT_EQ(got.status, msg::ForwardStatus::refused);
    EXPECT_NE(got.reason.find(reason), std::string::npos) << got.reason;
    EXPECT_FALSE(got.fd);
  }

  std::string root_;
  std::string home_;
  std::string forward_;
};

TEST_F(ForwardFileTest, AFileOfTheUserIsPassedReadOnly) {
  write_forward("bob@example.org\n");
  ForwardOpened got = open_forward_file(self(), false);
  ASSERT_EQ(got.status, msg::ForwardStatus::found) << got.reason;
  ASSERT_TRUE(got.fd);
  char text[32] = {};
  EXPECT_EQ(read(got.fd.get(), text, sizeof text), 16);
  EXPECT_EQ(std::string(text), "bob@example.org\n");
  EXPECT_EQ(fcntl(got.fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_NE(fcntl(got.fd.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST_F(ForwardFileTest, NoFileAndNoHomeAreNoForward) {
  EXPECT_EQ(open_forward_file(self(), false).status, msg::ForwardStatus::none);
  ForwardAccount gone = self();
  gone.home = root_ + "/nowhere";
  EXPECT_EQ(open_forward_file(gone, false).status, msg::ForwardStatus::none);
}

TEST_F(ForwardFileTest, ASymbolicLinkIsRefused) {
  const std::string target = root_ + "/elsewhere";
  write_forward("x\n");
  ASSERT_EQ(rename(forward_.c_str(), target.c_str()), 0);
  ASSERT_EQ(symlink(target.c_str(), forward_.c_str()), 0);
  expect_refused(open_forward_file(self(), false), "is a symbolic link");
}

TEST_F(ForwardFileTest, AWritableFileOrHomeIsRefused) {
  write_forward("x\n", 0664);
  expect_refused(open_forward_file(self(), false), ".forward is writable by its group");
  write_forward("x\n", 0646);
  expect_refused(open_forward_file(self(), false), ".forward is writable by its group");
  write_forward("x\n", 0644);
  ASSERT_EQ(chmod(home_.c_str(), 0775), 0);
  expect_refused(open_forward_file(self(), false), "home " + home_ + " is writable");
}

TEST_F(ForwardFileTest, AHomeThatIsALinkOrNoPathIsRefused) {
  const std::string link = root_ + "/link";
  ASSERT_EQ(symlink(home_.c_str(), link.c_str()), 0);
  ForwardAccount linked = self();
  linked.home = link;
  expect_refused(open_forward_file(linked, false), "is not a directory");
  ForwardAccount relative = self();
  relative.home = "home";
  expect_refused(open_forward_file(relative, false), "is not an absolute path");
}

TEST_F(ForwardFileTest, WhatIsNoRegularFileOrTooBigIsRefused) {
  ASSERT_EQ(mkfifo(forward_.c_str(), 0644), 0);
  expect_refused(open_forward_file(self(), false), "is not a regular file");
  ASSERT_EQ(unlink(forward_.c_str()), 0);
  write_forward(std::string(kMaxForwardFile + 1, 'a'));
  expect_refused(open_forward_file(self(), false), "is larger than 65536 bytes");
  write_forward(std::string(kMaxForwardFile, 'a'));
  EXPECT_EQ(open_forward_file(self(), false).status, msg::ForwardStatus::found);
}

// The cases below need other owners: chown, and the open as another user.
class ForwardFileAsRootTest : public ForwardFileTest {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "ownership needs root (CI runs the suite as root)";
    ForwardFileTest::SetUp();
    ASSERT_EQ(chown(home_.c_str(), kUserUid, kUserUid), 0);
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);
  }
  ForwardAccount user() const {
    return {.name = "user", .uid = kUserUid, .gid = kUserUid, .home = home_};
  }
};

TEST_F(ForwardFileAsRootTest, TheUsersOrRootsFileIsPassed) {
  write_forward("a\n", 0600);
  ASSERT_EQ(chown(forward_.c_str(), kUserUid, kUserUid), 0);
  EXPECT_EQ(open_forward_file(user(), true).status, msg::ForwardStatus::found);
  write_forward("a\n", 0644);
  ASSERT_EQ(chown(forward_.c_str(), 0, 0), 0);
  EXPECT_EQ(open_forward_file(user(), true).status, msg::ForwardStatus::found);
}

TEST_F(ForwardFileAsRootTest, AnotherUsersFileIsRefused) {
  write_forward("a\n", 0644);
  ASSERT_EQ(chown(forward_.c_str(), kOtherUid, kOtherUid), 0);
  expect_refused(open_forward_file(user(), true), "owned by uid 4242, neither the user nor root");
}

TEST_F(ForwardFileAsRootTest, AHomeOfAnotherUserIsRefused) {
  write_forward("a\n", 0644);
  ASSERT_EQ(chown(forward_.c_str(), kUserUid, kUserUid), 0);
  ASSERT_EQ(chown(home_.c_str(), kOtherUid, kOtherUid), 0);
  expect_refused(open_forward_file(user(), true), "owned by uid 4242");
}

TEST_F(ForwardFileAsRootTest, AHardLinkToRootsFileIsRefused) {
  const std::string secret = home_ + "/secret";
  write_forward("a\n", 0644);
  ASSERT_EQ(rename(forward_.c_str(), secret.c_str()), 0);
  ASSERT_EQ(chown(secret.c_str(), 0, 0), 0);
  ASSERT_EQ(link(secret.c_str(), forward_.c_str()), 0);
  expect_refused(open_forward_file(user(), true), "hard link to a file the user does not own");
}

TEST_F(ForwardFileAsRootTest, WhatTheUserMayNotReadIsNotReadForThem) {
  // Root's own file, mode 0600: root could read it, the user cannot.
  write_forward("a\n", 0600);
  ASSERT_EQ(chown(forward_.c_str(), 0, 0), 0);
  expect_refused(open_forward_file(user(), true), "is not readable by the user");
  // The same file opened without the switch would be read: the switch is what refuses it.
  EXPECT_EQ(open_forward_file(user(), false).status, msg::ForwardStatus::found);
  // And the thread is root again afterwards: its file system uid, and what it may open.
  EXPECT_EQ(setfsuid(static_cast<uid_t>(-1)), 0);
  EXPECT_EQ(setfsgid(static_cast<gid_t>(-1)), 0);
  EXPECT_TRUE(UniqueFd(open(forward_.c_str(), O_RDONLY | O_CLOEXEC)));
}

TEST(ForwardFor, NamesThatAreNoAccountOfAMailboxAreRefused) {
  lookup::Domain system;
  system.name = "example.org";
  system.system_users = true;
  const std::vector<lookup::Domain> domains{system};
  for (const char* name : {"../etc", "a/b", "..", ".", "-x", "", "bob\n"})
    EXPECT_EQ(open_forward_for(name, domains, {}, true).reason, "not a user name") << name;
  EXPECT_EQ(open_forward_for("postern-no-such-user", domains, {}, true).reason,
            "no such system user");
  const ForwardOpened root = open_forward_for("root", domains, {}, true);
  EXPECT_EQ(root.status, msg::ForwardStatus::refused);
  EXPECT_FALSE(root.fd);
  // A host with no domain of system users has no .forward to open.
  lookup::Domain virtual_domain;
  virtual_domain.name = "example.net";
  EXPECT_EQ(open_forward_for("root", {virtual_domain}, {}, true).reason,
            "no domain has users: system");
}

}  // namespace
}  // namespace postern::smtpd
