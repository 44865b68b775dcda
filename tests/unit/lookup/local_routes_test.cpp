// Local routes: aliases expanded recursively (loops, self-references, :include:, files,
// commands, remote forwards), users from a list, a table or the system, catch-all, and the
// delivery method each destination gets.
#include "lookup/local_routes.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <utility>

namespace postern::lookup {
namespace {

namespace fs = std::filesystem;
using msg::DeliveryMethod;
using msg::RouteStatus;

class LocalRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "postern-routes-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // example.org: virtual users alice, bob, carol, aliases; Maildirs under /mail/%d/%u.
  // The aliases file, /etc/aliases-org, is root's unless said otherwise.
  void configure(const std::string& aliases, std::optional<std::string> catch_all = {},
                 AliasRights commands = {}, AliasRights files = {}, uid_t aliases_owner = 0) {
    Domain org{.name = "example.org",
               .users = std::vector<std::string>{"alice", "bob", "carol"},
               .aliases = "/etc/aliases-org",
               .catch_all = std::move(catch_all),
               .alias_commands = commands,
               .alias_files = files,
               .maildir = "/mail/%d/%u/Maildir"};
    Domain net{
        .name = "example.net", .users = std::vector<std::string>{"dave"}, .mbox = "/var/mail/%u"};
    router_.configure({org, net});
    ASSERT_TRUE(
        router_.load(msg::TableKind::aliases, "/etc/aliases-org", aliases, aliases_owner).ok());
  }

  LocalRouter router_;
  fs::path dir_;
};

msg::Destination maildir(const std::string& user) {
  return {DeliveryMethod::maildir, "/mail/example.org/" + user + "/Maildir", "",
          user + "@example.org"};
}

TEST_F(LocalRoutesTest, UsersGetTheDomainsMailbox) {
  configure("");
  auto r = router_.resolve("Alice@example.org");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  ASSERT_EQ(r.destinations.size(), 1u);
  EXPECT_EQ(r.destinations[0], maildir("alice"));
  auto dave = router_.resolve("dave@EXAMPLE.net");
  ASSERT_EQ(dave.status, RouteStatus::ok);
  EXPECT_EQ(dave.destinations[0],
            (msg::Destination{DeliveryMethod::mbox, "/var/mail/dave", "", "dave@example.net"}));
  EXPECT_EQ(router_.resolve("zed@example.org").status, RouteStatus::unknown_user);
  EXPECT_EQ(router_.check("zed", "example.org").status, RouteStatus::unknown_user);
  EXPECT_EQ(router_.check("alice", "example.org").status, RouteStatus::ok);
  // Bare postmaster belongs to the first domain, and exists there.
  auto pm = router_.resolve("postmaster");
  ASSERT_EQ(pm.status, RouteStatus::ok);
  EXPECT_EQ(pm.destinations[0], maildir("postmaster"));
}

TEST_F(LocalRoutesTest, AliasesExpandRecursivelyAcrossDomains) {
  configure(
      "team: alice, staff\n"
      "staff: bob, dave@example.net, friend@remote.example\n"
      "archive: /var/archive/mbox\n"
      "robot: \"|/usr/bin/robot --flag\"\n"
      "postmaster: alice\n");
  auto r = router_.resolve("team@example.org");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  ASSERT_EQ(r.destinations.size(), 4u);
  EXPECT_EQ(r.destinations[0], maildir("alice"));
  EXPECT_EQ(r.destinations[1], maildir("bob"));
  EXPECT_EQ(r.destinations[2],
            (msg::Destination{DeliveryMethod::mbox, "/var/mail/dave", "", "dave@example.net"}));
  EXPECT_EQ(r.destinations[3], (msg::Destination{DeliveryMethod::forward, "friend@remote.example",
                                                 "", "staff@example.org"}));
  auto archive = router_.resolve("archive@example.org");
  ASSERT_EQ(archive.status, RouteStatus::ok);
  EXPECT_EQ(archive.destinations[0], (msg::Destination{DeliveryMethod::mbox, "/var/archive/mbox",
                                                       "", "archive@example.org"}));
  auto robot = router_.resolve("robot@example.org");
  ASSERT_EQ(robot.status, RouteStatus::ok);
  EXPECT_EQ(robot.destinations[0],
            (msg::Destination{DeliveryMethod::command, "/usr/bin/robot --flag", "",
                              "robot@example.org"}));
  // An alias for a name that is not a user exists at RCPT time.
  EXPECT_EQ(router_.check("team", "example.org").status, RouteStatus::ok);
  EXPECT_EQ(router_.resolve("postmaster@example.org").destinations[0], maildir("alice"));
}

TEST_F(LocalRoutesTest, LoopsAreRefusedAndSelfReferenceMeansTheUser) {
  configure(
      "a: b\n"
      "b: c\n"
      "c: a\n"
      "bob: bob, carol\n"
      "ghost: ghost\n");
  for (const char* name : {"a", "b", "c"}) {
    auto r = router_.resolve(std::string(name) + "@example.org");
    EXPECT_EQ(r.status, RouteStatus::loop) << name;
    EXPECT_NE(r.error.find("loop"), std::string::npos);
    EXPECT_TRUE(r.destinations.empty());
    EXPECT_EQ(router_.check(name, "example.org").status, RouteStatus::loop);
  }
  auto bob = router_.resolve("bob@example.org");
  ASSERT_EQ(bob.status, RouteStatus::ok) << bob.error;
  ASSERT_EQ(bob.destinations.size(), 2u);
  EXPECT_EQ(bob.destinations[0], maildir("bob"));
  EXPECT_EQ(bob.destinations[1], maildir("carol"));
  // Naming itself when no such user exists is no route.
  EXPECT_EQ(router_.resolve("ghost@example.org").status, RouteStatus::unknown_user);
}

TEST_F(LocalRoutesTest, DeepChainsStopAndDuplicatesCollapse) {
  std::string deep;
  for (int i = 0; i < 30; ++i)
    deep += "l" + std::to_string(i) + ": l" + std::to_string(i + 1) + "\n";
  deep += "l30: alice\n";
  deep += "twice: alice, alice@example.org, ALICE\n";
  configure(deep);
  EXPECT_EQ(router_.resolve("l0@example.org").status, RouteStatus::loop);
  EXPECT_EQ(router_.resolve("l15@example.org").status, RouteStatus::ok);
  auto twice = router_.resolve("twice@example.org");
  ASSERT_EQ(twice.status, RouteStatus::ok);
  EXPECT_EQ(twice.destinations.size(), 1u);
}

TEST_F(LocalRoutesTest, TooManyDestinationsFail) {
  std::string list = "big: ";
  for (size_t i = 0; i <= msg::kMaxDestinations; ++i)
    list += (i ? ", " : "") + std::string("u") + std::to_string(i) + "@remote.example";
  configure(list + "\n");
  auto r = router_.resolve("big@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_TRUE(r.destinations.empty());
}

TEST_F(LocalRoutesTest, IncludeFiles) {
  const std::string members = write("members", "# the list\nalice, bob\nfar@remote.example\n");
  const std::string missing = (dir_ / "missing").string();
  const std::string looping = write("looping", "self\n");
  configure("list: :include:" + members + "\n" + "broken: :include:" + missing + "\n" +
            "self: :include:" + looping + "\n");
  auto r = router_.resolve("list@example.org");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  ASSERT_EQ(r.destinations.size(), 3u);
  EXPECT_EQ(r.destinations[0], maildir("alice"));
  EXPECT_EQ(r.destinations[2].method, DeliveryMethod::forward);
  // Unreadable now is a temporary matter: RCPT says 451, delivery retries.
  auto broken = router_.resolve("broken@example.org");
  EXPECT_EQ(broken.status, RouteStatus::temporary);
  EXPECT_NE(broken.error.find("missing"), std::string::npos);
  // The file names the alias itself: the user behind "list" does not exist.
  EXPECT_EQ(router_.resolve("self@example.org").status, RouteStatus::unknown_user);
  // An edit is seen at once.
  write("members", "carol\n");
  auto again = router_.resolve("list@example.org");
  ASSERT_EQ(again.destinations.size(), 1u);
  EXPECT_EQ(again.destinations[0], maildir("carol"));
}

// What a local user who can write an :include: file (a list they manage) would try: make the
// daemon run a command or write a file of their choosing.
TEST_F(LocalRoutesTest, IncludeFilesNameCommandsAndFilesOnlyWhenAllowedAndTrusted) {
  const std::string list = write("list", "alice\n\"|touch /tmp/x\"\n/var/archive/list.mbox\n");
  ASSERT_EQ(chmod(list.c_str(), 0644), 0);
  const std::string aliases = "list: :include:" + list + "\nrobot: \"|/usr/bin/robot\"\n";
  const AliasRights everywhere{.aliases = true, .include = true};
  // Default: the aliases file may name commands, :include: files may not.
  configure(aliases);
  EXPECT_EQ(router_.resolve("robot@example.org").status, RouteStatus::ok);
  auto r = router_.resolve("list@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_NE(r.error.find("command in " + list + " refused: alias_commands does not allow"),
            std::string::npos)
      << r.error;
  EXPECT_TRUE(r.destinations.empty());
  EXPECT_EQ(router_.check("list", "example.org").status, RouteStatus::failed);
  // Commands allowed there, files not yet; the file is the aliases file owner's, 0644.
  configure(aliases, {}, everywhere, {}, geteuid());
  r = router_.resolve("list@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_NE(r.error.find("file in " + list + " refused: alias_files"), std::string::npos)
      << r.error;
  // Both allowed.
  configure(aliases, {}, everywhere, everywhere, geteuid());
  r = router_.resolve("list@example.org");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  ASSERT_EQ(r.destinations.size(), 3u);
  EXPECT_EQ(r.destinations[1],
            (msg::Destination{DeliveryMethod::command, "touch /tmp/x", "", "list@example.org"}));
  EXPECT_EQ(r.destinations[2], (msg::Destination{DeliveryMethod::mbox, "/var/archive/list.mbox", "",
                                                 "list@example.org"}));
  // Writable by its group: anyone in it could have written the command.
  ASSERT_EQ(chmod(list.c_str(), 0664), 0);
  r = router_.resolve("list@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_NE(r.error.find("writable by its group or by everyone"), std::string::npos) << r.error;
  // Addresses from such a file still count.
  write("list", "alice, bob\n");
  EXPECT_EQ(router_.resolve("list@example.org").status, RouteStatus::ok);
  // The aliases file itself may be barred from naming commands.
  configure(aliases, {}, AliasRights{.aliases = false, .include = false});
  r = router_.resolve("robot@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_NE(r.error.find("alias_commands does not allow the aliases file"), std::string::npos);
}

TEST_F(LocalRoutesTest, IncludeFilesOfAnotherUserNameNoCommands) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the file away";
  const std::string list = write("list", "\"|touch /tmp/x\"\n");
  ASSERT_EQ(chmod(list.c_str(), 0644), 0);
  const AliasRights everywhere{.aliases = true, .include = true};
  configure("list: :include:" + list + "\n", {}, everywhere, everywhere);
  // Root's, writable by root alone: honoured.
  EXPECT_EQ(router_.resolve("list@example.org").status, RouteStatus::ok);
  ASSERT_EQ(chown(list.c_str(), 65534, 65534), 0);
  auto r = router_.resolve("list@example.org");
  EXPECT_EQ(r.status, RouteStatus::failed);
  EXPECT_NE(r.error.find("owned by uid 65534, neither root nor the aliases file's owner"),
            std::string::npos)
      << r.error;
}

TEST_F(LocalRoutesTest, CatchAllIsOffByDefault) {
  configure("everyone: alice, bob\n");
  EXPECT_EQ(router_.resolve("nobody-here@example.org").status, RouteStatus::unknown_user);
  configure("everyone: alice, bob\n", "everyone");
  auto r = router_.resolve("nobody-here@example.org");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations.size(), 2u);
  EXPECT_EQ(router_.check("anything", "example.org").status, RouteStatus::ok);
  // A catch-all naming an unknown user does not chase itself.
  configure("", "ghost");
  EXPECT_EQ(router_.resolve("x@example.org").status, RouteStatus::unknown_user);
}

TEST_F(LocalRoutesTest, AliasesNotLoadedAnswerNothingForGood) {
  // A system domain whose aliases could not be read (a typo in the path, a file removed
  // before lookup restarted): postmaster (an alias there) and every other name are temporary,
  // and so is an alias of another domain that leads into it.
  Domain sys{.name = "localhost",
             .system_users = true,
             .aliases = "/etc/aliases-missing",
             .maildir = "~/Maildir"};
  Domain org{.name = "example.org",
             .users = std::vector<std::string>{"alice"},
             .aliases = "/etc/aliases-org",
             .maildir = "/mail/%u"};
  router_.configure({sys, org});
  ASSERT_TRUE(
      router_.load(msg::TableKind::aliases, "/etc/aliases-org", "boss: root@localhost\n").ok());
  for (const char* name : {"postmaster", "root", "no-such-user-here"}) {
    auto r = router_.check(name, "localhost");
    EXPECT_EQ(r.status, RouteStatus::temporary) << name;
    EXPECT_EQ(r.error, "aliases /etc/aliases-missing is not loaded");
  }
  EXPECT_EQ(router_.resolve("postmaster@localhost").status, RouteStatus::temporary);
  EXPECT_EQ(router_.resolve("boss@example.org").status, RouteStatus::temporary);
  EXPECT_EQ(router_.resolve("alice@example.org").status, RouteStatus::ok);
  ASSERT_TRUE(
      router_.load(msg::TableKind::aliases, "/etc/aliases-missing", "postmaster: root\n").ok());
  EXPECT_EQ(router_.check("no-such-user-here", "localhost").status, RouteStatus::unknown_user);
  // The entries the log's event=table names.
  EXPECT_EQ(router_.table_size(msg::TableKind::aliases, "/etc/aliases-missing"), 1u);
  EXPECT_EQ(router_.table_size(msg::TableKind::aliases, "/etc/aliases-none"), 0u);
  EXPECT_EQ(router_.table_size(msg::TableKind::users, "/etc/aliases-missing"), 0u);
}

TEST_F(LocalRoutesTest, VirtualUsersTableWithOwnDeliveries) {
  Domain d{.name = "example.com", .users_table = "/etc/users", .maildir = "/mail/%u"};
  router_.configure({d});
  // Not loaded yet: nobody can be told apart, so it is temporary; postmaster too, whose
  // delivery may be its own row's.
  EXPECT_EQ(router_.check("erin", "example.com").status, RouteStatus::temporary);
  EXPECT_EQ(router_.check("postmaster", "example.com").status, RouteStatus::temporary);
  EXPECT_EQ(router_.resolve("postmaster@example.com").status, RouteStatus::temporary);
  ASSERT_TRUE(router_
                  .load(msg::TableKind::users, "/etc/users",
                        "erin\nfrank command:/usr/bin/filter\ngus lmtp:unix:/run/lmtp\n")
                  .ok());
  auto erin = router_.resolve("erin@example.com");
  ASSERT_EQ(erin.status, RouteStatus::ok);
  EXPECT_EQ(erin.destinations[0],
            (msg::Destination{DeliveryMethod::maildir, "/mail/erin", "", "erin@example.com"}));
  auto frank = router_.resolve("frank@example.com");
  EXPECT_EQ(frank.destinations[0], (msg::Destination{DeliveryMethod::command, "/usr/bin/filter", "",
                                                     "frank@example.com"}));
  EXPECT_EQ(router_.resolve("gus@example.com").destinations[0].method, DeliveryMethod::lmtp);
  EXPECT_EQ(router_.resolve("hal@example.com").status, RouteStatus::unknown_user);
  // A bad reload keeps the table in use.
  auto bad = router_.load(msg::TableKind::users, "/etc/users", "erin\nfrank maildir:nope\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("/etc/users:2:"), std::string::npos);
  EXPECT_EQ(router_.resolve("gus@example.com").status, RouteStatus::ok);
}

TEST_F(LocalRoutesTest, SystemUsersDeliverAsThemselvesAndRootIsAliased) {
  // daemon (uid 1 on Debian) stands for any account: with min_uid low enough it is a mailbox.
  const passwd* pw = getpwnam("daemon");
  ASSERT_NE(pw, nullptr) << "the test needs the 'daemon' account";
  ASSERT_GT(pw->pw_uid, 0u);
  const std::string home = pw->pw_dir;
  Domain d{.name = "localhost",
           .system_users = true,
           .min_uid = static_cast<uint32_t>(pw->pw_uid),
           .aliases = "/etc/aliases",
           .maildir = "~/Maildir"};
  router_.configure({d});
  ASSERT_TRUE(router_.load(msg::TableKind::aliases, "/etc/aliases", "postmaster: root\n").ok());
  // Delivery reads the user's ~/.forward through the parent: here, it has none.
  router_.forward_files().store("daemon", msg::ForwardStatus::none, "", "");
  auto r = router_.resolve("daemon@localhost");
  ASSERT_EQ(r.status, RouteStatus::ok) << r.error;
  EXPECT_EQ(r.destinations[0],
            (msg::Destination{DeliveryMethod::maildir,
                              home + (home.ends_with("/") ? "" : "/") + "Maildir", "daemon",
                              "daemon@localhost"}));
  auto root = router_.resolve("postmaster@localhost");
  EXPECT_EQ(root.status, RouteStatus::unknown_user);
  EXPECT_NE(root.error.find("aliased"), std::string::npos);
  EXPECT_EQ(router_.check("no-such-account-here", "localhost").status, RouteStatus::unknown_user);
  EXPECT_EQ(router_.check("../etc", "localhost").status, RouteStatus::unknown_user);
}

// System accounts, nobody and the daemon's own users are no mailboxes: unknown at RCPT, so
// that mail for them never reaches a delivery helper.
TEST_F(LocalRoutesTest, SystemAccountsAndTheDaemonsUsersAreUnknown) {
  Domain d{.name = "localhost", .system_users = true, .maildir = "~/Maildir"};
  router_.configure({d}, {.min_uid = 0, .daemon_users = {"daemon"}, .daemon_uids = {}});
  for (const char* name : {"root", "bin", "daemon", "nobody"}) {
    if (getpwnam(name) == nullptr) continue;
    EXPECT_EQ(router_.check(name, "localhost").status, RouteStatus::unknown_user) << name;
    EXPECT_EQ(router_.resolve(std::string(name) + "@localhost").status, RouteStatus::unknown_user)
        << name;
  }
  const passwd* bin = getpwnam("bin");
  ASSERT_NE(bin, nullptr) << "the test needs the 'bin' account";
  // min_uid is honoured both ways: bin is a mailbox once min_uid allows its uid...
  d.min_uid = static_cast<uint32_t>(bin->pw_uid);
  router_.configure({d});
  EXPECT_EQ(router_.check("bin", "localhost").status, RouteStatus::ok);
  // ...unless it is one of the daemon's users, by name or by uid.
  router_.configure({d}, {.min_uid = 0, .daemon_users = {}, .daemon_uids = {bin->pw_uid}});
  EXPECT_EQ(router_.check("bin", "localhost").status, RouteStatus::unknown_user);
  d.min_uid = static_cast<uint32_t>(bin->pw_uid) + 1;
  router_.configure({d});
  auto refused = router_.check("bin", "localhost");
  EXPECT_EQ(refused.status, RouteStatus::unknown_user);
  EXPECT_NE(refused.error.find("min_uid"), std::string::npos) << refused.error;
}

TEST_F(LocalRoutesTest, UnsafeLocalPartsNeverBecomePaths) {
  Domain any{.name = "any.example", .maildir = "/mail/%u"};
  router_.configure({any});
  EXPECT_EQ(router_.resolve("ok@any.example").destinations[0].target, "/mail/ok");
  EXPECT_EQ(router_.resolve("..@any.example").status, RouteStatus::failed);
  EXPECT_EQ(router_.resolve("a/b@any.example").status, RouteStatus::failed);
}

TEST_F(LocalRoutesTest, ADomainWithoutMailboxTakesMailButDefersIt) {
  router_.configure({Domain{.name = "plain.example"}});
  EXPECT_EQ(router_.check("x", "plain.example").status, RouteStatus::ok);
  auto r = router_.resolve("x@plain.example");
  EXPECT_EQ(r.status, RouteStatus::temporary);
  EXPECT_NE(r.error.find("no mailbox"), std::string::npos);
  EXPECT_EQ(router_.resolve("x@elsewhere.example").status, RouteStatus::failed);
}

}  // namespace
}  // namespace postern::lookup
