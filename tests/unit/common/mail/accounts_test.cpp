// The account rule: root, group 0, nobody, the daemon's own users and accounts below min_uid
// are never mailboxes; anyone else is.
#include "common/mail/accounts.hpp"

#include <gtest/gtest.h>

namespace postern::accounts {
namespace {

const Policy kPolicy{.min_uid = 1000, .daemon_users = {"_smtpd", "_smtpq"}, .daemon_uids = {997}};

TEST(Accounts, PeopleAreMailboxes) {
  EXPECT_EQ(refusal({.name = "alice", .uid = 1000, .gid = 1000}, kPolicy), std::nullopt);
  EXPECT_EQ(refusal({.name = "bob", .uid = 60000, .gid = 100}, kPolicy), std::nullopt);
}

TEST(Accounts, RootAndGroupZeroNever) {
  EXPECT_TRUE(refusal({.name = "root", .uid = 0, .gid = 0}, {.min_uid = 0}).has_value());
  EXPECT_TRUE(refusal({.name = "toor", .uid = 0, .gid = 1000}, {.min_uid = 0}).has_value());
  EXPECT_TRUE(refusal({.name = "wheel", .uid = 1001, .gid = 0}, kPolicy).has_value());
  EXPECT_TRUE(refusal({.name = "root", .uid = 1002, .gid = 1002}, kPolicy).has_value());
}

TEST(Accounts, NobodyNever) {
  EXPECT_TRUE(refusal({.name = "nobody", .uid = kOverflowId, .gid = kOverflowId}, kPolicy));
  EXPECT_TRUE(refusal({.name = "x", .uid = 1003, .gid = kOverflowId}, kPolicy));
}

TEST(Accounts, TheDaemonsOwnUsersByNameOrUid) {
  EXPECT_TRUE(refusal({.name = "_smtpq", .uid = 5000, .gid = 5000}, kPolicy));
  EXPECT_TRUE(refusal({.name = "alias-of-smtpd", .uid = 997, .gid = 5000},
                      {.min_uid = 1, .daemon_users = {}, .daemon_uids = {997}}));
  EXPECT_TRUE(refusal({.name = "_smtpd", .uid = 5001, .gid = 5001},
                      {.min_uid = 1, .daemon_users = {"_smtpd"}, .daemon_uids = {}}));
}

TEST(Accounts, MinUidIsHonoured) {
  const auto daemon = refusal({.name = "daemon", .uid = 1, .gid = 1}, kPolicy);
  ASSERT_TRUE(daemon.has_value());
  EXPECT_NE(daemon->find("min_uid 1000"), std::string::npos) << *daemon;
  EXPECT_TRUE(refusal({.name = "www-data", .uid = 33, .gid = 33}, kPolicy));
  EXPECT_TRUE(refusal({.name = "sys", .uid = 999, .gid = 999}, kPolicy));
  EXPECT_EQ(refusal({.name = "daemon", .uid = 1, .gid = 1}, {.min_uid = 1}), std::nullopt);
  EXPECT_TRUE(refusal({.name = "carol", .uid = 1500, .gid = 1500}, {.min_uid = 2000}));
}

}  // namespace
}  // namespace postern::accounts
