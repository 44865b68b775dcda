// Relay domains and sender ownership (lookup/relay_policy.cpp): what "*." covers and what it
// does not, the senders table's syntax, and the default rule that keeps one user from sending
// as another.
#include "lookup/relay_policy.hpp"

#include <gtest/gtest.h>

namespace postern::lookup {
namespace {

TEST(RelayDomains, ExactNamesAndSubdomains) {
  RelayDomains relay;
  EXPECT_FALSE(relay.covers("relay.test"));
  relay.configure({"relay.test", "*.example.org"});
  EXPECT_TRUE(relay.covers("relay.test"));
  EXPECT_TRUE(relay.covers("RELAY.Test"));
  EXPECT_TRUE(relay.covers("relay.test."));
  EXPECT_FALSE(relay.covers("a.relay.test"));
  EXPECT_FALSE(relay.covers("xrelay.test"));
  EXPECT_FALSE(relay.covers("relay.test.evil"));
  EXPECT_TRUE(relay.covers("a.example.org"));
  EXPECT_TRUE(relay.covers("b.a.example.org"));
  // "*.example.org" is not example.org itself, nor a name that merely ends alike.
  EXPECT_FALSE(relay.covers("example.org"));
  EXPECT_FALSE(relay.covers("badexample.org"));
  EXPECT_FALSE(relay.covers("a.example.org.evil"));
  EXPECT_FALSE(relay.covers(""));
  EXPECT_FALSE(relay.covers("[192.0.2.1]"));
  relay.configure({});
  EXPECT_FALSE(relay.covers("relay.test"));
  EXPECT_TRUE(relay.empty());
}

TEST(SenderTable, ParsesAddressesAndDomains) {
  auto table = SenderTable::parse(
      "# login  addresses\n"
      "Dave@Virt.test  sales@VIRT.test, @Team.Test\tboss@virt.test\n"
      "alice postmaster@example.test\n",
      "/etc/senders");
  ASSERT_TRUE(table.ok()) << table.error().to_string();
  EXPECT_EQ(table.value().size(), 2u);
  const auto* dave = table.value().grants("DAVE@virt.test");
  ASSERT_NE(dave, nullptr);
  EXPECT_EQ(*dave, (std::vector<std::string>{"sales@virt.test", "@team.test", "boss@virt.test"}));
  EXPECT_EQ(table.value().grants("mallory"), nullptr);
}

TEST(SenderTable, RefusesWhatIsNotAnAddress) {
  for (const char* bad : {"dave\n", "dave not-an-address\n", "dave @\n", "dave @[192.0.2.1]\n",
                          "dave a@b.test\ndave c@d.test\n"}) {
    auto table = SenderTable::parse(bad, "/etc/senders");
    EXPECT_FALSE(table.ok()) << bad;
  }
  auto table = SenderTable::parse("ok a@b.test\ndave x@\n", "/etc/senders");
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.error().to_string(), "/etc/senders:2: bad address 'x@'");
}

class SenderPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override { policy_.configure(SenderRule::own, {{.name = "example.test"}}, true); }
  bool allowed(std::string_view login, std::string_view sender) const {
    return !policy_.refusal(login, sender).has_value();
  }
  SenderPolicy policy_;
};

// The case: dave@virt.test may not send as alice@example.test, with or without a table.
TEST_F(SenderPolicyTest, ALoginThatIsAnAddressSendsAsItself) {
  EXPECT_TRUE(allowed("dave@virt.test", "dave@virt.test"));
  EXPECT_TRUE(allowed("dave@virt.test", "DAVE@virt.TEST"));
  EXPECT_FALSE(allowed("dave@virt.test", "alice@example.test"));
  EXPECT_FALSE(allowed("dave@virt.test", "dave@example.test"));
  EXPECT_FALSE(allowed("dave@virt.test", "dave"));
  EXPECT_EQ(policy_.refusal("dave@virt.test", "alice@example.test"),
            "user dave@virt.test does not own <alice@example.test>");
  EXPECT_TRUE(allowed("dave@virt.test", ""));  // the null sender
}

TEST_F(SenderPolicyTest, ABareLoginSendsAsItselfAtTheLocalDomains) {
  EXPECT_TRUE(allowed("alice", "alice@example.test"));
  EXPECT_TRUE(allowed("Alice", "alice@example.test"));
  EXPECT_FALSE(allowed("alice", "alice@virt.test"));
  EXPECT_FALSE(allowed("alice", "alice.smith@example.test"));
  EXPECT_FALSE(allowed("alice", "bob@example.test"));
}

TEST_F(SenderPolicyTest, TheTableGrantsMoreAndOffAllowsAll) {
  auto table = SenderTable::parse("dave@virt.test sales@virt.test @team.test\n", "/s");
  ASSERT_TRUE(table.ok());
  policy_.load(std::move(table).value());
  EXPECT_TRUE(allowed("dave@virt.test", "sales@virt.test"));
  EXPECT_TRUE(allowed("dave@virt.test", "anyone@team.test"));
  EXPECT_TRUE(allowed("dave@virt.test", "dave@virt.test"));
  EXPECT_FALSE(allowed("dave@virt.test", "x@sub.team.test"));
  EXPECT_FALSE(allowed("alice", "sales@virt.test"));
  // A configuration without the table drops its grants.
  policy_.configure(SenderRule::own, {{.name = "example.test"}}, false);
  EXPECT_FALSE(allowed("dave@virt.test", "sales@virt.test"));
  policy_.configure(SenderRule::off, {}, false);
  EXPECT_TRUE(allowed("dave@virt.test", "alice@example.test"));
}

TEST_F(SenderPolicyTest, ATableNamedButNotLoadedIsMissing) {
  // SetUp names a table and loads none: its refusals are for want of the table.
  EXPECT_TRUE(policy_.table_missing());
  auto table = SenderTable::parse("dave@virt.test sales@virt.test\n", "/s");
  ASSERT_TRUE(table.ok());
  policy_.load(std::move(table).value());
  EXPECT_FALSE(policy_.table_missing());
  policy_.configure(SenderRule::own, {{.name = "example.test"}}, false);
  EXPECT_FALSE(policy_.table_missing());
  policy_.configure(SenderRule::off, {}, true);
  EXPECT_FALSE(policy_.table_missing());
}

}  // namespace
}  // namespace postern::lookup
