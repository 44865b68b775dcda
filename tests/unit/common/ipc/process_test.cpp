// The process table must describe a consistent tree: symmetric peers, unique executables.
#include "common/ipc/process.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace postern {
namespace {

TEST(ProcessTable, PeersAreSymmetric) {
  for (Role a : kChildRoles)
    for (Role b : kChildRoles)
      EXPECT_EQ(talks(a, b), talks(b, a)) << role_name(a) << " / " << role_name(b);
}

TEST(ProcessTable, EveryChildTalksToTheParentAndNotToItself) {
  for (Role r : kChildRoles) {
    EXPECT_TRUE(talks(r, Role::parent));
    EXPECT_FALSE(talks(r, r));
    EXPECT_FALSE(talks(r, Role::client));
  }
}

TEST(ProcessTable, DesignTopology) {
  EXPECT_TRUE(talks(Role::smtp, Role::queue));
  EXPECT_TRUE(talks(Role::smtp, Role::lookup));
  EXPECT_FALSE(talks(Role::smtp, Role::mda));
  EXPECT_FALSE(talks(Role::smtp, Role::mta));
  EXPECT_TRUE(talks(Role::queue, Role::mda));
  EXPECT_TRUE(talks(Role::queue, Role::mta));
  EXPECT_FALSE(talks(Role::mda, Role::mta));
  for (Role r : kChildRoles) {
    if (r != Role::control) {
      EXPECT_TRUE(talks(Role::control, r));
    }
  }
}

TEST(ProcessTable, ExecutablesAndNamesAreUnique) {
  std::set<std::string> executables;
  std::set<std::string> names;
  for (Role r : kChildRoles) {
    const ProcessInfo& info = process_info(r);
    EXPECT_EQ(info.role, r);
    EXPECT_TRUE(executables.insert(std::string(info.executable)).second);
    EXPECT_TRUE(names.insert(std::string(info.name)).second);
    EXPECT_EQ(info.executable.substr(0, 6), "smtpd-");
    EXPECT_LE(info.executable.size(), 15u) << "comm is truncated to 15 characters";
    EXPECT_EQ(role_from_name(info.name), r);
  }
  EXPECT_EQ(role_from_name("nonsense"), std::nullopt);
}

TEST(ProcessTable, OnlyTheQueueRunsAsTheQueueUserAndInTheSpool) {
  for (Role r : kChildRoles) {
    const ProcessInfo& info = process_info(r);
    EXPECT_EQ(info.run_as == RunAs::queue_user, r == Role::queue);
    EXPECT_EQ(info.jail == Jail::spool_dir, r == Role::queue);
  }
  EXPECT_EQ(process_info(Role::smtp).jail, Jail::empty_dir);
  EXPECT_EQ(process_info(Role::mta).jail, Jail::empty_dir);
  EXPECT_EQ(process_info(Role::control).jail, Jail::empty_dir);
}

}  // namespace
}  // namespace postern
