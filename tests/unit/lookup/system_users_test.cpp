// The system account cache: answers (absent ones too) come from the cache until they are a
// minute old, hits and misses are counted, and the cache stays bounded. Uses the accounts
// every Debian system has (root, nobody); time is passed in.
#include "lookup/system_users.hpp"

#include <gtest/gtest.h>
#include <pwd.h>

#include <string>

namespace postern::lookup {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1000);

TEST(SystemUsers, FindsAccountsAndCachesThem) {
  const passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr) << "the test needs the 'nobody' account";
  const uid_t uid = pw->pw_uid;
  const std::string home = pw->pw_dir;
  SystemUsers users;
  auto a = users.find("nobody", kT0);
  ASSERT_EQ(a.found, SystemUsers::Found::yes);
  EXPECT_EQ(a.account.uid, uid);
  EXPECT_EQ(a.account.home, home);
  EXPECT_EQ(users.misses(), 1u);
  EXPECT_EQ(users.hits(), 0u);
  auto b = users.find("nobody", kT0 + seconds(59));
  EXPECT_EQ(b.found, SystemUsers::Found::yes);
  EXPECT_EQ(b.account.uid, uid);
  EXPECT_EQ(users.hits(), 1u);
  EXPECT_EQ(users.find("root", kT0).account.uid, 0u);
  EXPECT_EQ(users.size(), 2u);
}

TEST(SystemUsers, AbsentAccountsAreCachedToo) {
  SystemUsers users;
  EXPECT_EQ(users.find("no-such-account-here", kT0).found, SystemUsers::Found::no);
  EXPECT_EQ(users.find("no-such-account-here", kT0 + seconds(1)).found, SystemUsers::Found::no);
  EXPECT_EQ(users.misses(), 1u);
  EXPECT_EQ(users.hits(), 1u);
}

TEST(SystemUsers, AnswersAreAskedAgainAfterAMinuteAndAfterClear) {
  SystemUsers users;
  (void)users.find("nobody", kT0);
  // Used every 30 s: still asked again once the answer is a minute old.
  (void)users.find("nobody", kT0 + seconds(30));
  (void)users.find("nobody", kT0 + seconds(60));
  EXPECT_EQ(users.hits(), 1u);
  EXPECT_EQ(users.misses(), 2u);
  users.clear();
  (void)users.find("nobody", kT0 + seconds(61));
  EXPECT_EQ(users.misses(), 3u);
}

TEST(SystemUsers, TheCacheStaysBounded) {
  SystemUsers users(100);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(users.find("nobody-" + std::to_string(i), kT0).found, SystemUsers::Found::no);
  EXPECT_EQ(users.size(), 100u);
  // The most recent are still there, the first are gone.
  (void)users.find("nobody-999", kT0);
  EXPECT_EQ(users.hits(), 1u);
  (void)users.find("nobody-0", kT0);
  EXPECT_EQ(users.hits(), 1u);
}

}  // namespace
}  // namespace postern::lookup
