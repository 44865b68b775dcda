// DATA transparency: unstuffing, the end marker and nothing else, strict line endings, limits,
// fed whole and byte by byte.
#include "common/mail/data.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::mail {
namespace {

struct Outcome {
  std::string message;
  size_t consumed = 0;
  bool done = false;
  DotReader::Problem problem = DotReader::Problem::none;
};

Outcome read_all(std::string_view input, uint64_t max = 1 << 20) {
  DotReader reader(max);
  Outcome o;
  o.consumed = reader.feed(input, o.message);
  o.done = reader.done();
  o.problem = reader.problem();
  return o;
}

// The same input one byte per call must give the same result.
Outcome read_bytewise(std::string_view input, uint64_t max = 1 << 20) {
  DotReader reader(max);
  Outcome o;
  for (size_t i = 0; i < input.size() && !reader.done(); ++i)
    o.consumed += reader.feed(input.substr(i, 1), o.message);
  o.done = reader.done();
  o.problem = reader.problem();
  return o;
}

void expect_same(std::string_view input, uint64_t max = 1 << 20) {
  const Outcome a = read_all(input, max);
  const Outcome b = read_bytewise(input, max);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.consumed, b.consumed);
  EXPECT_EQ(a.done, b.done);
  EXPECT_EQ(a.problem, b.problem);
}

TEST(DotReader, PlainMessageEndsAtTheMarker) {
  const std::string in = "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
  const Outcome o = read_all(in);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.problem, DotReader::Problem::none);
  EXPECT_EQ(o.message, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(in.substr(o.consumed), "QUIT\r\n");  // pipelined command left for the parser
  expect_same(in);
}

TEST(DotReader, EmptyMessage) {
  const Outcome o = read_all(".\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.message, "");
}

TEST(DotReader, StuffedDotsAreRemoved) {
  const Outcome o = read_all("..\r\n..x\r\n...\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.message, ".\r\n.x\r\n..\r\n");
  expect_same("..\r\n..x\r\n...\r\n.\r\n");
}

TEST(DotReader, EightBitAndNulBytesPassUnchanged) {
  std::string body = "caf\xc3\xa9 \xff\xfe";
  body += '\0';
  body += "end\r\n";
  const Outcome o = read_all(body + ".\r\n");
  EXPECT_EQ(o.message, body);
}

// SMTP smuggling: none of these end the data; each is a bare CR or LF and refuses the message.
TEST(DotReader, OnlyCrLfDotCrLfEndsData) {
  for (const std::string fake :
       {"a\n.\r\nMAIL FROM:<x>\r\n", "a\r\n.\nMAIL FROM:<x>\r\n", "a\r.\r\nMAIL FROM:<x>\r\n",
        "a\n.\nMAIL FROM:<x>\r\n", "a\r\n.\rMAIL FROM:<x>\r\n"}) {
    SCOPED_TRACE(fake);
    const Outcome o = read_all(fake);
    EXPECT_FALSE(o.done);
    EXPECT_NE(o.problem, DotReader::Problem::none);
    EXPECT_EQ(o.consumed, fake.size());
    const Outcome finished = read_all(fake + "\r\n.\r\n");
    EXPECT_TRUE(finished.done);
    EXPECT_NE(finished.problem, DotReader::Problem::none);
    expect_same(fake + "\r\n.\r\n");
  }
}

TEST(DotReader, BareLfAndBareCrAreNamed) {
  EXPECT_EQ(read_all("a\nb\r\n.\r\n").problem, DotReader::Problem::bare_lf);
  EXPECT_EQ(read_all("a\rb\r\n.\r\n").problem, DotReader::Problem::bare_cr);
  EXPECT_EQ(read_all("a\r\r\n.\r\n").problem, DotReader::Problem::bare_cr);
}

TEST(DotReader, LineLengthCountsTheCrLfButNotAStuffedDot) {
  const std::string ok(998, 'x');
  EXPECT_EQ(read_all(ok + "\r\n.\r\n").problem, DotReader::Problem::none);
  EXPECT_EQ(read_all("." + ok + "\r\n.\r\n").problem, DotReader::Problem::none);
  const std::string long_line(999, 'x');
  const Outcome o = read_all(long_line + "\r\n.\r\n");
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.problem, DotReader::Problem::line_too_long);
  expect_same(long_line + "\r\n.\r\n");
  // Crossed inside one read: what comes before the limit is kept, as when read byte by byte.
  const std::string longer(1500, 'x');
  EXPECT_EQ(read_all(longer + "\r\n.\r\n").message, std::string(1000, 'x'));
  expect_same(longer + "\r\n.\r\n");
}

TEST(DotReader, SizeLimitStopsCollectingButReadsToTheEnd) {
  const std::string body(100, 'x');
  const Outcome o = read_all(body + "\r\n" + body + "\r\n.\r\n", 150);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.problem, DotReader::Problem::too_big);
  EXPECT_LE(o.message.size(), 150u);
  EXPECT_EQ(read_all(body + "\r\n.\r\n", 102).problem, DotReader::Problem::none);
  EXPECT_EQ(read_all(body + "\r\n.\r\n", 101).problem, DotReader::Problem::too_big);
  EXPECT_EQ(read_all(body + "\r\n.\r\n", 50).message, std::string(50, 'x'));
  expect_same(body + "\r\n" + body + "\r\n.\r\n", 150);
  expect_same(body + "\r\n.\r\n", 50);
}

TEST(DotReader, NothingIsReadAfterTheEnd) {
  DotReader reader(1000);
  std::string out;
  EXPECT_EQ(reader.feed("x\r\n.\r\n", out), 6u);
  EXPECT_EQ(reader.feed("more", out), 0u);
  EXPECT_EQ(out, "x\r\n");
  EXPECT_EQ(reader.size(), 3u);
}

}  // namespace
}  // namespace postern::mail
