// JSON text for smtpctl's --json views (common/util/json.hpp): strings escaped so that any
// bytes make valid JSON, objects and arrays built member by member.
#include "common/util/json.hpp"

#include <gtest/gtest.h>

namespace postern::json {
namespace {

using namespace std::string_literals;

TEST(Json, Quote) {
  EXPECT_EQ(quote(""), "\"\"");
  EXPECT_EQ(quote("plain"), "\"plain\"");
  EXPECT_EQ(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(quote("l1\nl2\tx\r\x1b"), "\"l1\\nl2\\tx\\u000d\\u001b\"");
  EXPECT_EQ(quote("\x7f"), "\"\\u007f\"");
  EXPECT_EQ(quote("nul\0x"s), "\"nul\\u0000x\"");
  EXPECT_EQ(quote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // UTF-8 kept
  // Not UTF-8 (a lone byte, a cut sequence, a C1 control): U+FFFD.
  EXPECT_EQ(quote("\xff"), "\"\\ufffd\"");
  EXPECT_EQ(quote("\xc3"), "\"\\ufffd\"");
  EXPECT_EQ(quote("\xc2\x85"), "\"\\ufffd\\ufffd\"");
}

TEST(Json, ObjectsAndArrays) {
  EXPECT_EQ(Object().text(), "{}");
  EXPECT_EQ(Array().text(), "[]");
  const std::string o = Object()
                            .add("id", "x")
                            .add("n", uint64_t{3})
                            .add("neg", int64_t{-1})
                            .add("yes", true)
                            .raw("list", Array().raw("1").raw("\"two\"").text())
                            .raw("none", "null")
                            .text();
  EXPECT_EQ(o, R"({"id":"x","n":3,"neg":-1,"yes":true,"list":[1,"two"],"none":null})");
}

}  // namespace
}  // namespace postern::json
