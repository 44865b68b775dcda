// A system user's ~/.forward as lookup reads and follows it: the parser (an :include: file's
// list plus "\name"), and the routes through it: unknown until the parent has answered,
// unusable files ignored for the mailbox, unreadable ones temporary, loops caught, commands
// only where the domain's alias policy allows them in :include: files.
#include <gtest/gtest.h>
#include <pwd.h>

#include <set>
#include <string>
#include <vector>

#include "lookup/aliases.hpp"
#include "lookup/api.hpp"
#include "lookup/forward_files.hpp"
#include "lookup/local_routes.hpp"
#include "mda/api.hpp"

namespace postern::lookup {
namespace {

using Kind = AliasTarget::Kind;
using msg::DeliveryMethod;
using msg::ForwardStatus;
using msg::RouteStatus;

TEST(ForwardList, TakesAddressesCommandsFilesAndOwnMailboxes) {
  auto list = parse_forward_list(
      "# mine\n\\bob, alice@Example.ORG\n\"|/usr/bin/vacation bob\"\n/var/mail/bob.copy\n", "f");
  ASSERT_TRUE(list.ok()) << list.error().to_string();
  EXPECT_EQ(list.value(), (std::vector<AliasTarget>{{Kind::mailbox, "bob"},
                                                    {Kind::address, "alice@example.org"},
                                                    {Kind::command, "/usr/bin/vacation bob"},
                                                    {Kind::file, "/var/mail/bob.copy"}}));
  EXPECT_TRUE(parse_forward_list("", "f").ok());
}

TEST(ForwardList, RefusesWhatNamesNoLocalMailbox) {
  for (const char* text : {"\\bob@example.org\n", "\\\n", "\\a b\n", "\\/etc/passwd\n"})
    EXPECT_FALSE(parse_forward_list(text, "f").ok()) << text;
  const auto error = parse_forward_list("ok\n\\x@y\n", "~bob/.forward");
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.error().line, 2);
  // Only a .forward takes "\name": an aliases file or an :include: file still refuses it.
  EXPECT_FALSE(parse_alias_list("\\bob\n", "f").ok());
  EXPECT_FALSE(AliasTable::parse("a: \\bob\n", "f").ok());
}

TEST(ForwardFiles, AnswersAreKeptForTheirLifetime) {
  ForwardFiles files;
  const auto t0 = ForwardFiles::Clock::now();
  EXPECT_EQ(files.find("bob", t0), nullptr);
  files.store("bob", ForwardStatus::found, "", "carol\n", t0);
  ASSERT_NE(files.find("bob", t0), nullptr);
  EXPECT_EQ(files.find("bob", t0)->kind, ForwardState::Kind::list);
  EXPECT_EQ(files.find("bob", t0 + ForwardFiles::kLifetime), nullptr);
  files.store_failure("bob", "EIO", t0);
  EXPECT_EQ(files.find("bob", t0)->kind, ForwardState::Kind::failed);
  EXPECT_EQ(files.find("bob", t0 + ForwardFiles::kFailedLifetime), nullptr);
  // Refused, unparseable and empty files are no .forward: the mailbox.
  files.store("r", ForwardStatus::refused, "group-writable", "", t0);
  files.store("u", ForwardStatus::found, "", "a b c\n", t0);
  files.store("e", ForwardStatus::found, "", "# nothing\n", t0);
  for (const char* user : {"r", "u", "e"}) {
    ASSERT_NE(files.find(user, t0), nullptr) << user;
    EXPECT_EQ(files.find(user, t0)->kind, ForwardState::Kind::none) << user;
  }
}

// daemon and bin (uids 1 and 2 on Debian) stand for two ordinary accounts.
class ForwardRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // getpwnam's answer lives until its next call.
    const passwd* daemon = getpwnam("daemon");
    ASSERT_NE(daemon, nullptr) << "the test needs the 'daemon' account";
    daemon_home_ = slash(daemon->pw_dir);
    const passwd* bin = getpwnam("bin");
    ASSERT_NE(bin, nullptr) << "the test needs the 'bin' account";
    bin_home_ = slash(bin->pw_dir);
    domain_ =
        Domain{.name = "localhost", .system_users = true, .min_uid = 1, .maildir = "~/Maildir"};
    router_.configure({domain_});
  }
  static std::string slash(const std::string& home) {
    return home.ends_with('/') ? home : home + "/";
  }
  void forward(const std::string& user, const std::string& text) {
    router_.forward_files().store(user, ForwardStatus::found, "", text);
  }
  msg::Destination mailbox(const std::string& user, const std::string& home) const {
    return {DeliveryMethod::maildir, home + "Maildir", user, user + "@localhost"};
  }

  Domain domain_;
  std::string daemon_home_;
  std::string bin_home_;
  LocalRouter router_;
};

TEST_F(ForwardRoutesTest, AnUnreadForwardIsAskedForAndNeverGuessed) {
  std::set<std::string> unread;
  auto r = router_.resolve("daemon@localhost", &unread);
  EXPECT_EQ(r.status, RouteStatus::temporary);
  EXPECT_EQ(unread, std::set<std::string>{"daemon"});
  // RCPT does not wait for it: the user exists.
  EXPECT_EQ(router_.check("daemon", "localhost").status, RouteStatus::ok);
  router_.forward_files().store("daemon", ForwardStatus::none, "", "");
  unread.clear();
  r = router_.resolve("daemon@localhost", &unread);
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_TRUE(unread.empty());
  EXPECT_EQ(r.destinations, std::vector<msg::Destination>{mailbox("daemon", daemon_home_)});
}

TEST_F(ForwardRoutesTest, AnUnreadableForwardDefers) {
  router_.forward_files().store("daemon", ForwardStatus::failed, "Input/output error", "");
  auto r = router_.resolve("daemon@localhost");
  EXPECT_EQ(r.status, RouteStatus::temporary);
  EXPECT_NE(r.error.find("Input/output error"), std::string::npos) << r.error;
}

TEST_F(ForwardRoutesTest, AnotherUserOwnMailboxAndARemoteAddress) {
  forward("daemon", "bin, \\daemon, friend@example.net\n");
  router_.forward_files().store("bin", ForwardStatus::none, "", "");
  auto r = router_.resolve("daemon@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations,
            (std::vector<msg::Destination>{
                mailbox("bin", bin_home_),
                mailbox("daemon", daemon_home_),
                {DeliveryMethod::forward, "friend@example.net", "", "daemon@localhost"}}));
}

TEST_F(ForwardRoutesTest, NamingTheUserItselfIsTheMailboxNotALoop) {
  for (const char* text : {"daemon\n", "\\daemon\n", "daemon, \\daemon\n"}) {
    forward("daemon", text);
    auto r = router_.resolve("daemon@localhost");
    ASSERT_EQ(r.status, RouteStatus::ok) << text << ": " << r.error;
    EXPECT_EQ(r.destinations, std::vector<msg::Destination>{mailbox("daemon", daemon_home_)})
        << text;
  }
}

TEST_F(ForwardRoutesTest, ForwardsThatPointAtEachOtherAreALoop) {
  forward("daemon", "bin\n");
  forward("bin", "daemon\n");
  EXPECT_EQ(router_.resolve("daemon@localhost").status, RouteStatus::loop);
  // "\name" ends the expansion: no loop.
  forward("bin", "\\daemon\n");
  auto r = router_.resolve("daemon@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations, std::vector<msg::Destination>{mailbox("daemon", daemon_home_)});
}

TEST_F(ForwardRoutesTest, CommandsFollowTheIncludePolicyAndRunAsTheUser) {
  forward("daemon", "\\daemon, |/usr/bin/procmail\n");
  // alias_commands: include off (the default): the whole file is ignored, the mailbox gets it.
  auto r = router_.resolve("daemon@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations, std::vector<msg::Destination>{mailbox("daemon", daemon_home_)});
  domain_.alias_commands.include = true;
  router_.configure({domain_});
  forward("daemon", "\\daemon, |/usr/bin/procmail\n");
  r = router_.resolve("daemon@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations,
            (std::vector<msg::Destination>{
                mailbox("daemon", daemon_home_),
                {DeliveryMethod::command, "/usr/bin/procmail", "daemon", "daemon@localhost"}}));
  // A file needs alias_files' include, and an :include: is never taken from a .forward.
  forward("daemon", "/tmp/copy\n");
  EXPECT_EQ(router_.resolve("daemon@localhost").destinations,
            std::vector<msg::Destination>{mailbox("daemon", daemon_home_)});
  forward("daemon", ":include:/etc/list\n");
  EXPECT_EQ(router_.resolve("daemon@localhost").destinations,
            std::vector<msg::Destination>{mailbox("daemon", daemon_home_)});
}

}  // namespace
}  // namespace postern::lookup
