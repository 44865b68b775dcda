// Tests for the bounded file reader in common/util/io.hpp: its limit (a file of max_bytes is
// read whole, one byte more is refused however the file claims its size), the descriptor's
// offset left alone, a descriptor it cannot read from offset 0, and what the caller keeps.
#include "common/util/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "common/util/fd.hpp"

namespace postern {
namespace {

// An unlinked temporary file holding text, open for reading and writing.
UniqueFd file_with(const std::string& text) {
  char path[] = "/tmp/io_test.XXXXXX";
  UniqueFd fd(mkstemp(path));
  EXPECT_TRUE(fd);
  unlink(path);
  EXPECT_TRUE(write_all(fd.get(), text).ok());
  return fd;
}

TEST(ReadAll, EmptyFile) {
  const UniqueFd fd = file_with("");
  const Result<std::string> text = read_all(fd.get(), 10);
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(text.value(), "");
}

TEST(ReadAll, ExactlyTheLimitIsReadWhole) {
  // Larger than one 64 KiB read, so the loop joins chunks.
  const std::string content(200000, 'x');
  const UniqueFd fd = file_with(content);
  const Result<std::string> text = read_all(fd.get(), content.size());
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(text.value(), content);
}

TEST(ReadAll, OneByteOverTheLimitIsRefused) {
  const std::string content(200001, 'x');
  const UniqueFd fd = file_with(content);
  const Result<std::string> text = read_all(fd.get(), 200000);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.error().message, "larger than 200000 bytes");
}

TEST(ReadAll, RefusalLeavesMoreThanTheLimitInTheCallersString) {
  // What a caller that words the refusal its own way (credentials) relies on; and the read
  // stops within one chunk past the limit, not at the end of a huge file.
  const UniqueFd fd = file_with(std::string(1 << 20, 'y'));
  std::string into = "kept:";
  const Status read = read_all(fd.get(), 1000, into);
  ASSERT_FALSE(read.ok());
  EXPECT_GT(into.size(), 5u + 1000u);
  EXPECT_LE(into.size(), 5u + 1000u + 65536u);
  EXPECT_EQ(into.substr(0, 5), "kept:");
}

TEST(ReadAll, AppendsAndLimitsOnlyWhatItReads) {
  const UniqueFd fd = file_with("abc");
  std::string into(100, '-');
  ASSERT_TRUE(read_all(fd.get(), 3, into).ok());
  EXPECT_EQ(into, std::string(100, '-') + "abc");
}

TEST(ReadAll, ReadsFromOffsetZeroAndLeavesTheOffsetAlone) {
  const UniqueFd fd = file_with("0123456789");
  ASSERT_EQ(lseek(fd.get(), 4, SEEK_SET), 4);
  const Result<std::string> text = read_all(fd.get(), 100);
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(text.value(), "0123456789");
  EXPECT_EQ(lseek(fd.get(), 0, SEEK_CUR), 4);
}

TEST(ReadAll, FileThatGrowsPastTheLimitIsRefused) {
  // Whatever fstat said before, the bytes read decide.
  const UniqueFd fd = file_with("short");
  struct stat st {};
  ASSERT_EQ(fstat(fd.get(), &st), 0);
  ASSERT_EQ(st.st_size, 5);
  ASSERT_TRUE(write_all(fd.get(), std::string(100, 'z')).ok());
  EXPECT_FALSE(read_all(fd.get(), static_cast<size_t>(st.st_size)).ok());
}

TEST(ReadAll, APipeIsAnError) {
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  const UniqueFd read_end(ends[0]);
  const UniqueFd write_end(ends[1]);
  ASSERT_TRUE(write_all(write_end.get(), "data").ok());
  const Result<std::string> text = read_all(read_end.get(), 100);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.error().message, "read: Illegal seek");
}

TEST(ReadAll, ABadDescriptorIsAnError) {
  const Result<std::string> text = read_all(-1, 100);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.error().message, "read: Bad file descriptor");
}

}  // namespace
}  // namespace postern
