// Tests for common/mail/reply.cpp: single and multi-line replies, enhanced status codes at their
// edges, and every bound and malformation a hostile server can try.
#include "common/mail/reply.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::mail {
namespace {

// The reply the lines make, or the parser's error.
struct Parsed {
  std::optional<Reply> reply;
  std::string error;
};
Parsed parse(const std::vector<std::string>& lines) {
  ReplyParser parser;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto step = parser.push(lines[i]);
    if (step == ReplyParser::Step::error) return {std::nullopt, parser.error()};
    if (step == ReplyParser::Step::done) {
      EXPECT_EQ(i + 1, lines.size()) << "done before the last line";
      return {parser.take(), ""};
    }
  }
  return {std::nullopt, "incomplete"};
}

TEST(Reply, SingleLine) {
  const Parsed p = parse({"250 2.1.5 Ok"});
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->code, 250);
  EXPECT_TRUE(p.reply->positive());
  EXPECT_EQ(p.reply->text(), "2.1.5 Ok");
  EXPECT_EQ(p.reply->status(), "2.1.5");
  EXPECT_EQ(p.reply->reply_class(), ReplyClass::positive);
}

TEST(Reply, BareCodeAndCodeWithSpaceOnly) {
  Parsed p = parse({"354"});
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->code, 354);
  EXPECT_EQ(p.reply->text(), "");
  EXPECT_EQ(p.reply->status(), "3.0.0");
  p = parse({"221 "});
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->text(), "");
}

TEST(Reply, MultiLineKeepsEveryLineAndReadsTheLastCode) {
  const Parsed p = parse({"250-mx.example", "250-PIPELINING", "250-SIZE 1000", "250 8BITMIME"});
  ASSERT_TRUE(p.reply) << p.error;
  EXPECT_EQ(p.reply->lines,
            (std::vector<std::string>{"mx.example", "PIPELINING", "SIZE 1000", "8BITMIME"}));
  EXPECT_EQ(p.reply->text(), "8BITMIME");
  EXPECT_FALSE(p.reply->enhanced);

  const Parsed q = parse({"452-4.2.2 mailbox full", "452 4.2.2 try later"});
  ASSERT_TRUE(q.reply);
  EXPECT_EQ(q.reply->status(), "4.2.2");
  EXPECT_EQ(q.reply->text(), "4.2.2 try later");
}

TEST(Reply, ParserIsReadyForTheNextReplyAfterTake) {
  ReplyParser parser;
  ASSERT_EQ(parser.push("250 first"), ReplyParser::Step::done);
  EXPECT_EQ(parser.push("250 second"), ReplyParser::Step::error) << "a reply not taken";
  ReplyParser fresh;
  ASSERT_EQ(fresh.push("250 first"), ReplyParser::Step::done);
  EXPECT_EQ(fresh.take().text(), "first");
  ASSERT_EQ(fresh.push("550-a"), ReplyParser::Step::more);
  ASSERT_EQ(fresh.push("550 b"), ReplyParser::Step::done);
  const Reply second = fresh.take();
  EXPECT_EQ(second.code, 550);
  EXPECT_EQ(second.lines.size(), 2u);
}

TEST(Reply, Malformed) {
  for (const std::vector<std::string>& lines : std::vector<std::vector<std::string>>{
           {""},
           {"25"},
           {"abc hello"},
           {"150 too low"},
           {"650 too high"},
           {"099 no"},
           {"250x"},
           {"250_ok"},
           {"250-first", "251 other code"},
           {"250-first", "garbage"},
           {" 250 leading space"},
       }) {
    const Parsed p = parse(lines);
    EXPECT_FALSE(p.reply) << lines.back();
    EXPECT_NE(p.error, "incomplete") << lines.back();
  }
}

TEST(Reply, ParserStaysFailed) {
  ReplyParser parser;
  ASSERT_EQ(parser.push("xyz"), ReplyParser::Step::error);
  EXPECT_TRUE(parser.failed());
  EXPECT_EQ(parser.push("250 ok"), ReplyParser::Step::error);
}

TEST(Reply, LineBound) {
  EXPECT_TRUE(parse({"250 " + std::string(kMaxReplyLine - 4, 'a')}).reply);
  const Parsed p = parse({"250 " + std::string(kMaxReplyLine - 3, 'a')});
  EXPECT_FALSE(p.reply);
  EXPECT_EQ(p.error, "reply line too long");
}

TEST(Reply, LineCountBound) {
  std::vector<std::string> lines(kMaxReplyLines - 1, "250-x");
  lines.emplace_back("250 end");
  EXPECT_TRUE(parse(lines).reply);
  lines.back() = "250-x";
  lines.emplace_back("250 end");
  const Parsed p = parse(lines);
  EXPECT_FALSE(p.reply);
  EXPECT_EQ(p.error, "reply of too many lines");
}

TEST(Reply, ByteBound) {
  // Lines within their own bound whose sum passes the reply's.
  const std::string long_line = "250-" + std::string(kMaxReplyLine - 4, 'a');
  std::vector<std::string> lines(kMaxReplyBytes / long_line.size() + 1, long_line);
  lines.emplace_back("250 end");
  ASSERT_LE(lines.size(), kMaxReplyLines);
  const Parsed p = parse(lines);
  EXPECT_FALSE(p.reply);
  EXPECT_EQ(p.error, "reply too long");
}

TEST(Reply, KeepsBareLfAndControlBytesForTheLogToEscape) {
  const Parsed p = parse({"452 4.2.2 full\nstatus=sent"});
  ASSERT_TRUE(p.reply);
  EXPECT_EQ(p.reply->text(), "4.2.2 full\nstatus=sent");
  EXPECT_EQ(p.reply->status(), "4.2.2");
}

TEST(EnhancedStatus, Accepted) {
  const auto s = parse_enhanced_status("5.1.1 no such user");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->first, (EnhancedStatus{5, 1, 1}));
  EXPECT_EQ(s->second, 6u);
  const auto wide = parse_enhanced_status("4.123.999");
  ASSERT_TRUE(wide);
  EXPECT_EQ(wide->first.to_string(), "4.123.999");
  EXPECT_EQ(wide->second, 9u);
}

TEST(EnhancedStatus, Refused) {
  for (const char* text : {"", "2.0", "3.0.0 x", "6.0.0", "2.1234.0", "2.0.1234", "2..0", "2.0.",
                           "2.0.0x", "25.0.0", "x.1.1", "2.a.1", "2.0.0\tok"})
    EXPECT_FALSE(parse_enhanced_status(text)) << text;
}

TEST(EnhancedStatus, OfAnotherClassThanTheCodeIsIgnored) {
  const Parsed p = parse({"450 5.1.1 confused"});
  ASSERT_TRUE(p.reply);
  EXPECT_FALSE(p.reply->enhanced);
  EXPECT_EQ(p.reply->status(), "4.0.0");
  EXPECT_EQ(p.reply->text(), "5.1.1 confused");
}

}  // namespace
}  // namespace postern::mail
