// File tables and virtual users tables: what each line means, and every refusal with its line.
#include "lookup/table.hpp"
#include "mda/api.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace postern::lookup {
namespace {

TEST(FileTable, KeysValuesCommentsAndCase) {
  auto t = FileTable::parse("# comment\n\nAlice   a value  \r\nbob\n  carol\tx y\n", "t");
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  EXPECT_EQ(t.value().size(), 3u);
  ASSERT_NE(t.value().find("alice"), nullptr);
  EXPECT_EQ(*t.value().find("alice"), "a value");
  EXPECT_EQ(*t.value().find("bob"), "");
  EXPECT_EQ(*t.value().find("carol"), "x y");
  EXPECT_EQ(t.value().find("Alice"), nullptr);  // callers pass lower case
  EXPECT_EQ(t.value().find("dave"), nullptr);
}

TEST(FileTable, ErrorsNameTheLine) {
  auto dup = FileTable::parse("a 1\nb 2\nA 3\n", "t");
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().line, 3);
  EXPECT_EQ(dup.error().to_string(), "t:3: duplicate key 'a' (first at line 1)");
  auto control = FileTable::parse("a 1\nb \x01\n", "t");
  ASSERT_FALSE(control.ok());
  EXPECT_EQ(control.error().line, 2);
  auto nul = FileTable::parse(std::string_view("a\0b\n", 4), "t");
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.error().line, 1);
  auto longline = FileTable::parse("a " + std::string(kMaxTableLine, 'x') + "\n", "t");
  ASSERT_FALSE(longline.ok());
  EXPECT_EQ(longline.error().line, 1);
}

TEST(UserDelivery, EachMethod) {
  auto none = parse_user_delivery("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none.value().has_value());
  auto md = parse_user_delivery("maildir:/srv/mail/x");
  ASSERT_TRUE(md.ok() && md.value());
  EXPECT_EQ(md.value()->method, msg::DeliveryMethod::maildir);
  EXPECT_EQ(md.value()->target, "/srv/mail/x");
  auto lmtp = parse_user_delivery("lmtp:127.0.0.1:24");
  ASSERT_TRUE(lmtp.ok() && lmtp.value());
  EXPECT_EQ(lmtp.value()->method, msg::DeliveryMethod::lmtp);
  auto cmd = parse_user_delivery("command:/usr/bin/procmail -d x");
  ASSERT_TRUE(cmd.ok() && cmd.value());
  EXPECT_EQ(cmd.value()->target, "/usr/bin/procmail -d x");
  EXPECT_FALSE(parse_user_delivery("maildir:relative/path").ok());
  EXPECT_FALSE(parse_user_delivery("mbox:/srv/../etc/passwd").ok());
  EXPECT_FALSE(parse_user_delivery("lmtp:localhost").ok());
  EXPECT_FALSE(parse_user_delivery("ftp:/x").ok());
  EXPECT_FALSE(parse_user_delivery("/just/a/path").ok());
  EXPECT_FALSE(parse_user_delivery("command:").ok());
}

TEST(UserTable, DomainSpecificKeysWin) {
  auto t = UserTable::parse("alice\nbob maildir:/a/bob\nbob@example.net mbox:/b/bob\n", "users");
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  ASSERT_NE(t.value().find("alice", "example.org"), nullptr);
  EXPECT_FALSE(t.value().find("alice", "example.org")->has_value());
  const auto* bob_org = t.value().find("bob", "example.org");
  ASSERT_NE(bob_org, nullptr);
  EXPECT_EQ((*bob_org)->target, "/a/bob");
  const auto* bob_net = t.value().find("bob", "example.net");
  ASSERT_NE(bob_net, nullptr);
  EXPECT_EQ((*bob_net)->target, "/b/bob");
  EXPECT_EQ(t.value().find("carol", "example.org"), nullptr);
}

TEST(UserTable, BadValuesAndKeysNameTheLine) {
  auto bad_value = UserTable::parse("alice\n\nbob maildir:nope\n", "users");
  ASSERT_FALSE(bad_value.ok());
  EXPECT_EQ(bad_value.error().line, 3);
  EXPECT_NE(bad_value.error().message.find("absolute"), std::string::npos);
  auto bad_key = UserTable::parse("alice\n@example.org\n", "users");
  ASSERT_FALSE(bad_key.ok());
  EXPECT_EQ(bad_key.error().line, 2);
  EXPECT_FALSE(UserTable::parse("a%b\n", "users").ok());
  EXPECT_FALSE(UserTable::parse("a@b@c\n", "users").ok());
}

TEST(UserTable, TheExampleFileLoads) {
  std::ifstream file(POSTERN_TEST_DATA_DIR "/table/virtual-users", std::ios::binary);
  ASSERT_TRUE(file.is_open());
  std::ostringstream contents;
  contents << file.rdbuf();
  const std::string text = contents.str();
  auto t = UserTable::parse(text, "virtual-users");
  ASSERT_TRUE(t.ok()) << t.error().to_string();
  EXPECT_EQ(t.value().size(), 5u);
}

}  // namespace
}  // namespace postern::lookup
