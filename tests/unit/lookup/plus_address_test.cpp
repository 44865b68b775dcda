// Plus addressing (recipient_delimiter): "user+tag" is "user" unless it is an alias or a user
// itself, aliases are looked up whole first, the catch-all comes after both, and an unknown
// "nobody+x" stays unknown.
#include "lookup/api.hpp"
#include "lookup/local_routes.hpp"
#include "lookup/recipients.hpp"
#include "mda/api.hpp"

#include <gtest/gtest.h>
#include <pwd.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace postern::lookup {
namespace {

using msg::DeliveryMethod;
using msg::RouteStatus;

constexpr std::string_view kAliases =
    "team: alice, bob\n"
    "alice+lists: carol\n"
    "bob+tag: bob\n";

Domain example(std::string delimiter = "+", std::optional<std::string> catch_all = {}) {
  return Domain{.name = "example.org",
                .users = std::vector<std::string>{"alice", "bob", "carol", "dave+x"},
                .aliases = "/etc/aliases-org",
                .catch_all = std::move(catch_all),
                .recipient_delimiter = std::move(delimiter),
                .maildir = "/mail/%u/Maildir"};
}

class PlusAddressTest : public ::testing::Test {
 protected:
  void configure(Domain d) {
    router_.configure({std::move(d)});
    ASSERT_TRUE(router_.load(msg::TableKind::aliases, "/etc/aliases-org", kAliases).ok());
  }
  // The one destination of an address, or a failure naming what came instead.
  msg::Destination only(std::string_view address) {
    auto r = router_.resolve(address);
    EXPECT_EQ(r.status, RouteStatus::ok) << address << ": " << r.error;
    EXPECT_EQ(r.destinations.size(), 1u) << address;
    return r.destinations.empty() ? msg::Destination{} : r.destinations.front();
  }
  LocalRouter router_;
};

msg::Destination mailbox(const std::string& user, const std::string& delivered_to) {
  return {DeliveryMethod::maildir, "/mail/" + user + "/Maildir", "", delivered_to + "@example.org"};
}

TEST_F(PlusAddressTest, ExtensionIsDeliveredToTheUserAndKeptInDeliveredTo) {
  configure(example());
  EXPECT_EQ(only("alice+news@example.org"), mailbox("alice", "alice+news"));
  EXPECT_EQ(only("Alice+News@Example.org"), mailbox("alice", "alice+news"));
  // Only the first delimiter splits: the rest is all extension.
  EXPECT_EQ(only("carol+a+b@example.org"), mailbox("carol", "carol+a+b"));
  EXPECT_EQ(router_.check("alice+news", "example.org").status, RouteStatus::ok);
  EXPECT_EQ(only("alice@example.org"), mailbox("alice", "alice"));
}

TEST_F(PlusAddressTest, AnExactMatchAlwaysWins) {
  configure(example());
  // A user whose name holds the delimiter is that user, not dave.
  EXPECT_EQ(only("dave+x@example.org"), mailbox("dave+x", "dave+x"));
  // An alias written with the extension is used whole...
  EXPECT_EQ(only("alice+lists@example.org"), mailbox("carol", "carol"));
  // ...and one naming the base user goes to its mailbox.
  EXPECT_EQ(only("bob+tag@example.org"), mailbox("bob", "bob"));
}

TEST_F(PlusAddressTest, AliasesAreLookedUpWithoutTheExtension) {
  configure(example());
  auto team = router_.resolve("team+weekly@example.org");
  ASSERT_EQ(team.status, RouteStatus::ok) << team.error;
  ASSERT_EQ(team.destinations.size(), 2u);
  EXPECT_EQ(team.destinations[0], mailbox("alice", "alice"));
  EXPECT_EQ(team.destinations[1], mailbox("bob", "bob"));
}

TEST_F(PlusAddressTest, UnknownUsersStayUnknown) {
  configure(example());
  EXPECT_EQ(router_.resolve("nobody+x@example.org").status, RouteStatus::unknown_user);
  EXPECT_EQ(router_.check("nobody+x", "example.org").status, RouteStatus::unknown_user);
  // Nothing before the delimiter: no user to fall back to.
  EXPECT_EQ(router_.check("+alice", "example.org").status, RouteStatus::unknown_user);
  RecipientPolicy policy(router_);
  EXPECT_EQ(policy.decide({.local_part = "nobody+x", .domain = "example.org"}),
            msg::RcptDecision::unknown_user);
  EXPECT_EQ(policy.decide({.local_part = "bob+anything", .domain = "example.org"}),
            msg::RcptDecision::local);
}

TEST_F(PlusAddressTest, TheCatchAllComesAfterTheUserWithoutExtension) {
  configure(example("+", "carol"));
  EXPECT_EQ(only("alice+x@example.org"), mailbox("alice", "alice+x"));
  EXPECT_EQ(only("nobody+x@example.org"), mailbox("carol", "carol"));
}

TEST_F(PlusAddressTest, AnEmptyDelimiterTurnsItOff) {
  configure(example(""));
  EXPECT_EQ(router_.resolve("alice+news@example.org").status, RouteStatus::unknown_user);
  EXPECT_EQ(only("alice@example.org"), mailbox("alice", "alice"));
}

TEST_F(PlusAddressTest, EachCharacterOfTheDelimiterSplits) {
  configure(example("-+"));
  EXPECT_EQ(only("alice-news@example.org"), mailbox("alice", "alice-news"));
  EXPECT_EQ(only("alice+news@example.org"), mailbox("alice", "alice+news"));
  EXPECT_EQ(router_.resolve("alice_news@example.org").status, RouteStatus::unknown_user);
}

TEST_F(PlusAddressTest, SystemUsersWithAnExtension) {
  const passwd* pw = getpwnam("daemon");
  ASSERT_NE(pw, nullptr) << "the test needs the 'daemon' account";
  const std::string home = pw->pw_dir;
  router_.configure({Domain{.name = "localhost",
                            .system_users = true,
                            .min_uid = static_cast<uint32_t>(pw->pw_uid),
                            .maildir = "~/Maildir"}});
  // Delivery reads the user's ~/.forward through the parent: here, it has none.
  router_.forward_files().store("daemon", msg::ForwardStatus::none, "", "");
  auto r = router_.resolve("daemon+cron@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  ASSERT_EQ(r.destinations.size(), 1u);
  EXPECT_EQ(r.destinations[0],
            (msg::Destination{DeliveryMethod::maildir,
                              home + (home.ends_with("/") ? "" : "/") + "Maildir", "daemon",
                              "daemon+cron@localhost"}));
  EXPECT_EQ(router_.check("no-such-account-here+x", "localhost").status, RouteStatus::unknown_user);
}

}  // namespace
}  // namespace postern::lookup
