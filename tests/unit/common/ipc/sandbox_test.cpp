// The seccomp filter refuses what a role does not need, in a forked process (the filter can
// never be removed again).
#include "common/ipc/sandbox.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>

#include "common/util/fd.hpp"

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

constexpr Role kJailedNetworkRoles[] = {Role::smtp, Role::mta, Role::control};

// An abstract-namespace unix socket (no file, so no chroot hides it) that a compromised
// process would like to reach.
struct AbstractListener {
  AbstractListener() {
    address.sun_family = AF_UNIX;
    const char name[] = "\0postern-sandbox-test";
    std::memcpy(address.sun_path, name, sizeof name - 1);
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sizeof name - 1);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length), 0)
        << std::strerror(errno);
    EXPECT_EQ(listen(fd.get(), 4), 0);
  }
  UniqueFd fd{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_un address{};
  socklen_t length = 0;
};

// socket(AF_UNIX) says EPERM (glibc's syslog reconnect must not kill the process); the test
// program exits 0 only when it was refused, 3 when it reached the abstract socket.
TEST(Sandbox, JailedRolesCannotReachTheAbstractNamespace) {
  AbstractListener target;
  for (Role role : kJailedNetworkRoles) {
    const int status = run_filtered(role, [&] {
      for (const int type : {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET}) {
        errno = 0;
        const int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
          if (connect(fd, reinterpret_cast<const sockaddr*>(&target.address), target.length) == 0)
            _exit(3);
          _exit(4);
        }
        if (errno != EPERM) _exit(5);
      }
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << role_name(role) << " status " << status;
  }
}

TEST(Sandbox, JailedRolesCannotPairBindOrConnect) {
  AbstractListener target;
  for (Role role : kJailedNetworkRoles) {
    int sv[2];
    EXPECT_TRUE(killed_by_sigsys(run_filtered(role, [&] {
      (void)!socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    }))) << role_name(role);
    // A unix socket it already had (like syslog's) cannot be bound anywhere.
    const int unbound = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_TRUE(killed_by_sigsys(run_filtered(role, [&] {
      (void)!bind(unbound, reinterpret_cast<const sockaddr*>(&target.address), target.length);
    }))) << role_name(role);
    if (role != Role::mta) {  // mta connects its TCP sockets
      const int spare = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      EXPECT_TRUE(killed_by_sigsys(run_filtered(role, [&] {
        (void)!connect(spare, reinterpret_cast<const sockaddr*>(&target.address), target.length);
      }))) << role_name(role);
      close(spare);
    }
    close(unbound);
  }
}

TEST(Sandbox, OnlyMtaMakesTcpSocketsAndNothingElse) {
  for (Role role : {Role::smtp, Role::control}) {
    for (const int family : {AF_INET, AF_INET6})
      EXPECT_TRUE(killed_by_sigsys(run_filtered(role, [family] {
        (void)!socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      }))) << role_name(role);
  }
  for (const int family : {AF_INET, AF_INET6}) {
    const int status = run_filtered(Role::mta, [family] {
      const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
      if (fd < 0) _exit(6);
    });
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << family << " status " << status;
  }
  struct Attempt {
    int family, type, protocol;
  };
  for (const Attempt a : {Attempt{AF_INET, SOCK_DGRAM, 0}, Attempt{AF_INET6, SOCK_RAW, 0},
                          Attempt{AF_INET, SOCK_STREAM, IPPROTO_SCTP},
                          Attempt{AF_NETLINK, SOCK_DGRAM, 0}, Attempt{AF_PACKET, SOCK_DGRAM, 0}})
    EXPECT_TRUE(killed_by_sigsys(
        run_filtered(Role::mta, [a] { (void)!socket(a.family, a.type, a.protocol); })))
        << a.family << "/" << a.type << "/" << a.protocol;
}

// A source address (relay_source): mta binds its TCP sockets, with IP_BIND_ADDRESS_NO_PORT and
// no other socket option; the other jailed roles bind nothing.
TEST(Sandbox, MtaBindsTcpSocketsToASourceAddressOnly) {
  int status = run_filtered(Role::mta, [] {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) _exit(6);
    const int on = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on) != 0) _exit(7);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) _exit(8);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  status = run_filtered(Role::mta, [] {
    const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    // (::1 may be missing on the machine: refused or not, the call was allowed.)
    (void)!bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_TRUE(killed_by_sigsys(run_filtered(Role::mta, [] {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    (void)!setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  })));
  // (A TCP socket made before the filter: these roles may not make one.)
  const UniqueFd tcp(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(tcp.valid());
  for (Role role : {Role::smtp, Role::control})
    EXPECT_TRUE(killed_by_sigsys(run_filtered(role, [&] {
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      (void)!bind(tcp.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
    }))) << role_name(role);
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
    char name[] = "true";  // execv's argv is not const
    char* argv[] = {name, nullptr};
    execv("/bin/true", argv);
  })));
}

}  // namespace
}  // namespace postern::sandbox
