// Maildir delivery: a message lands in new/ byte-exact, and a Maildir left half-made (tmp/
// without new/ or cur/, as a delivery killed while creating it leaves it) is completed.
#include "mda/maildir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace postern::mda {
namespace {

namespace fs = std::filesystem;

class MaildirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "postern-maildir-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    const std::string message = (dir_ / "message").string();
    std::ofstream(message) << "Subject: x\r\n\r\nbody\r\n";
    fd_.reset(open(message.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string delivered(const fs::path& maildir) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(maildir / "new")) files.push_back(e.path());
    if (files.size() != 1) return "";
    std::ifstream in(files[0], std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
  }

  fs::path dir_;
  UniqueFd fd_;
};

TEST_F(MaildirTest, FirstDeliveryCreatesTheMaildir) {
  const fs::path maildir = dir_ / "alice" / "Maildir";
  auto path = deliver_to_maildir(maildir.string(), "Delivered-To: a\r\n", fd_.get(), "1.M1P1Q1.h");
  ASSERT_TRUE(path.ok()) << path.error().message;
  EXPECT_EQ(delivered(maildir), "Delivered-To: a\r\nSubject: x\r\n\r\nbody\r\n");
  EXPECT_TRUE(fs::is_directory(maildir / "cur"));
  EXPECT_TRUE(fs::is_empty(maildir / "tmp"));
}

TEST_F(MaildirTest, AHalfMadeMaildirIsCompleted) {
  const fs::path maildir = dir_ / "bob" / "Maildir";
  fs::create_directories(maildir / "tmp");
  std::vector<StagedMaildir> staged;
  auto s = stage_maildir(maildir.string(), "", fd_.get(), "2.M2P2Q2.h");
  ASSERT_TRUE(s.ok()) << s.error().message;
  staged.push_back(std::move(s).value());
  const std::vector<Status> published = publish_maildirs(staged);
  ASSERT_EQ(published.size(), 1u);
  ASSERT_TRUE(published[0].ok()) << published[0].error().message;
  EXPECT_EQ(delivered(maildir), "Subject: x\r\n\r\nbody\r\n");
  EXPECT_TRUE(fs::is_directory(maildir / "cur"));
}

}  // namespace
}  // namespace postern::mda
