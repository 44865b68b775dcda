// The seccomp filter refuses what a role does not need, in a forked process (the filter can
// never be removed again).
#include "common/sandbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

namespace postern::sandbox {
namespace {

// Runs body in a child under role's filter; returns the child's wait status.
int run_filtered(Role role, const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(90);
    if (!install_syscall_filter(role).ok()) _exit(91);
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool killed_by_sigsys(int status) {
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS;
}

TEST(Sandbox, EveryRoleKeepsItsEventLoopAndIpc) {
  for (Role role : kChildRoles) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    const int status = run_filtered(role, [&] {
      char c = 'x';
      if (write(sv[0], &c, 1) != 1 || read(sv[1], &c, 1) != 1) _exit(2);
      close(sv[0]);
      close(sv[1]);
    });
    close(sv[0]);
    close(sv[1]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << role_name(role) << " status " << status;
  }
}

TEST(Sandbox, NetworkSocketsAreRefusedToTheSmtpProcess) {
  EXPECT_TRUE(
      killed_by_sigsys(run_filtered(Role::smtp, [] { (void)!socket(AF_INET, SOCK_STREAM, 0); })));
}

// Only mda makes directories (Maildirs); the queue makes its spool areas with mkdirat.
TEST(Sandbox, CreatingDirectoriesIsRefusedButToMda) {
  for (Role role : kChildRoles) {
    const int status =
        run_filtered(role, [] { (void)!mkdir("/tmp/postern-sandbox-test-never", 0700); });
    rmdir("/tmp/postern-sandbox-test-never");
    if (role == Role::mda) {
      EXPECT_TRUE(WIFEXITED(status)) << role_name(role);
    } else {
      EXPECT_TRUE(killed_by_sigsys(status)) << role_name(role);
    }
  }
  rmdir("/tmp/postern-sandbox-test-never");
}

TEST(Sandbox, ExecIsRefused) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "sanitizer runtimes need execve";
#endif
  EXPECT_TRUE(killed_by_sigsys(run_filtered(Role::control, [] {
    char* argv[] = {const_cast<char*>("true"), nullptr};
    execv("/bin/true", argv);
  })));
}

}  // namespace
}  // namespace postern::sandbox
