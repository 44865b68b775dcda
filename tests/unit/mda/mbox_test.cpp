// mbox: mboxrd quoting, the From_ line, appending under locks, and no half message left.
#include "mda/mbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace postern::mda {
namespace {

TEST(Mboxrd, QuotesFromLinesThatRoundTrip) {
  EXPECT_EQ(mboxrd_escape("From me\r\nx\r\n"), ">From me\nx\n");
  EXPECT_EQ(mboxrd_escape(">From a\r\n>>From b\r\nFromage\r\n From c\r\n"),
            ">>From a\n>>>From b\nFromage\n From c\n");
  EXPECT_EQ(mboxrd_escape("no final newline"), "no final newline\n");
  EXPECT_EQ(mboxrd_escape(""), "");
}

const std::string kMessage = "Subject: s\r\n\r\nFrom the start\r\nbody\r\n";

class MboxFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/postern-mbox-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    box_ = dir_ + "/alice";
    char msg[] = "/tmp/postern-msg-XXXXXX";
    message_fd_ = mkstemp(msg);
    unlink(msg);
    // The message, then bytes written after its commit (never delivered).
    const std::string text = kMessage + "postern-envelope 3\n";
    ASSERT_EQ(write(message_fd_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  void TearDown() override {
    close(message_fd_);
    std::string cmd = "rm -rf " + dir_;
    (void)!system(cmd.c_str());
  }
  std::string contents() {
    std::ifstream in(box_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_, box_;
  MessageData message() const { return {message_fd_, kMessage.size()}; }
  int message_fd_ = -1;
};

TEST_F(MboxFile, AppendsWithAFromLineAndQuoting) {
  ASSERT_TRUE(deliver_to_mbox(box_, "bob@example.org", "Return-Path: <bob@example.org>\r\n",
                              message(), 1795448903)
                  .ok());
  ASSERT_TRUE(deliver_to_mbox(box_, "", "", message(), 1795448903).ok());
  EXPECT_EQ(contents(),
            "From bob@example.org Mon Nov 23 15:48:23 2026\n"
            "Return-Path: <bob@example.org>\nSubject: s\n\n>From the start\nbody\n\n"
            "From MAILER-DAEMON Mon Nov 23 15:48:23 2026\n"
            "Subject: s\n\n>From the start\nbody\n\n");
  EXPECT_EQ(access((box_ + ".lock").c_str(), F_OK), -1);  // the dotlock is gone
}

TEST_F(MboxFile, ALockedMailboxDefersInsteadOfWaitingForever) {
  const std::string lock = box_ + ".lock";
  const int fd = open(lock.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  const Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("mailbox is locked"), std::string::npos);
  EXPECT_EQ(access(lock.c_str(), F_OK), 0);  // someone else's lock is left alone
}

TEST_F(MboxFile, RefusesSymlinksAndNonFiles) {
  ASSERT_EQ(symlink("/etc/passwd", box_.c_str()), 0);
  const Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is a symbolic link"), std::string::npos) << st.error().message;
}

// The checks below are what a hostile local user would exploit: a mailbox that is someone
// else's file (appending to it writes into their data), a second name for a file the
// delivering user may write, a lock directory anyone may rename entries in.
TEST_F(MboxFile, DefersAFileOwnedBySomeoneElse) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  const int fd = open(box_.c_str(), O_CREAT | O_WRONLY, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fchown(fd, 65534, 65534), 0);
  close(fd);
  const Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("is owned by uid 65534, not by the recipient"),
            std::string::npos)
      << st.error().message;
  EXPECT_EQ(contents(), "");
  EXPECT_EQ(access((box_ + ".lock").c_str(), F_OK), -1);
}

TEST_F(MboxFile, DefersAFileWithASecondName) {
  const int fd = open(box_.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  ASSERT_EQ(link(box_.c_str(), (dir_ + "/other").c_str()), 0);
  const Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("has 2 links, not 1"), std::string::npos) << st.error().message;
  EXPECT_EQ(contents(), "");
}

TEST_F(MboxFile, DefersInAWorldWritableDirectoryWithoutStickyBit) {
  ASSERT_EQ(chmod(dir_.c_str(), 0777), 0);
  Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("writable by everyone without the sticky bit"),
            std::string::npos)
      << st.error().message;
  EXPECT_EQ(access(box_.c_str(), F_OK), -1);  // nothing was created
  // With the sticky bit (as /tmp has it) entries are their owners' alone.
  ASSERT_EQ(chmod(dir_.c_str(), 01777), 0);
  EXPECT_TRUE(deliver_to_mbox(box_, "a@b", "", message(), 0).ok());
}

TEST_F(MboxFile, DefersInADirectoryOfAnotherUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the directory away";
  ASSERT_EQ(chown(dir_.c_str(), 65534, 65534), 0);
  const Status st = deliver_to_mbox(box_, "a@b", "", message(), 0);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("neither root nor the recipient"), std::string::npos)
      << st.error().message;
}

TEST_F(MboxFile, DefersAFifo) {
  ASSERT_EQ(mkfifo(box_.c_str(), 0600), 0);
  // Opened without blocking (no reader: ENXIO), never hanging the delivery thread.
  EXPECT_FALSE(deliver_to_mbox(box_, "a@b", "", message(), 0).ok());
}

}  // namespace
}  // namespace postern::mda
