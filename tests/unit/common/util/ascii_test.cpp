// Tests for common/util/ascii.hpp's printable(): the one replacement of control characters
// for text shown outside the log (smtpctl's listings, a bounce's header fields).
#include "common/util/ascii.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern {
namespace {

TEST(Printable, ReplacesEveryC0ControlAndDel) {
  std::string all;
  for (int c = 0; c < 0x20; ++c) all += static_cast<char>(c);
  all += '\x7f';
  EXPECT_EQ(ascii::printable(all, '?'), std::string(0x21, '?'));
  EXPECT_EQ(ascii::printable("a\r\nb\tc", ' '), "a  b c");
}

TEST(Printable, KeepsPrintableAsciiAndEightBitBytes) {
  std::string all;
  for (int c = 0x20; c < 0x7f; ++c) all += static_cast<char>(c);
  EXPECT_EQ(ascii::printable(all, '?'), all);
  // UTF-8 (and any other byte >= 0x80) passes: it cannot start a line or a terminal sequence
  // on its own, and a UTF-8 address must stay readable.
  EXPECT_EQ(ascii::printable("j\xc3\xbcrgen@b\xc3\xa4r.example", '?'),
            "j\xc3\xbcrgen@b\xc3\xa4r.example");
}

TEST(Printable, ForgedLineStaysOneLine) {
  // What a client would try in MAIL FROM to forge a line in smtpctl's listing.
  const std::string shown = ascii::printable("a@b\r\nrecipient: x@y delivered\x1b[2J", '?');
  EXPECT_EQ(shown.find_first_of("\r\n\x1b"), std::string::npos);
  EXPECT_EQ(shown, "a@b??recipient: x@y delivered?[2J");
}

TEST(Printable, EmptyAndNul) {
  EXPECT_EQ(ascii::printable("", '?'), "");
  EXPECT_EQ(ascii::printable(std::string("a\0b", 3), ' '), "a b");
}

}  // namespace
}  // namespace postern
