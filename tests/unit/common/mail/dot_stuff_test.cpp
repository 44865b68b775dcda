// Tests for common/mail/dot_stuff.cpp: leading dots at every place a line can start, the end of
// data, and that chunks split anywhere (even between CR and LF) stuff like the whole message.
#include "common/mail/dot_stuff.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::mail {
namespace {

TEST(DotStuff, LeadingDots) {
  EXPECT_EQ(dot_stuff(".x\r\n"), "..x\r\n.\r\n");
  EXPECT_EQ(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
  EXPECT_EQ(dot_stuff(".\r\n"), "..\r\n.\r\n");
  EXPECT_EQ(dot_stuff("a.b\r\nc.\r\n"), "a.b\r\nc.\r\n.\r\n");
  EXPECT_EQ(dot_stuff("a\n.b\r\n"), "a\n..b\r\n.\r\n");  // after a bare LF too
}

TEST(DotStuff, EndOfData) {
  EXPECT_EQ(dot_stuff(""), ".\r\n");
  EXPECT_EQ(dot_stuff("no end"), "no end\r\n.\r\n");
  EXPECT_EQ(dot_stuff("bare lf\n"), "bare lf\n\r\n.\r\n");
  EXPECT_EQ(dot_stuff("cr\r"), "cr\r\r\n.\r\n");
  EXPECT_EQ(dot_stuff("ok\r\n"), "ok\r\n.\r\n");
}

TEST(DotStuff, AnySplitStuffsLikeTheWhole) {
  const std::string message = ".a\r\n.\r\nb\r\n..\r\n\r\n.c\nd.\r\n.";
  const std::string whole = dot_stuff(message);
  for (size_t first = 0; first <= message.size(); ++first) {
    for (size_t second = first; second <= message.size(); ++second) {
      DotStuffer stuffer;
      std::string out;
      stuffer.add(std::string_view(message).substr(0, first), out);
      stuffer.add(std::string_view(message).substr(first, second - first), out);
      stuffer.add(std::string_view(message).substr(second), out);
      stuffer.finish(out);
      ASSERT_EQ(out, whole) << first << " " << second;
    }
  }
  // Byte by byte, CR and LF of the last line apart.
  DotStuffer stuffer;
  std::string out;
  for (char c : std::string("x\r\n.y\r\n")) stuffer.add(std::string_view(&c, 1), out);
  stuffer.finish(out);
  EXPECT_EQ(out, "x\r\n..y\r\n.\r\n");
}

}  // namespace
}  // namespace postern::mail
