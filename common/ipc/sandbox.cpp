// Seccomp allowlists; see sandbox.hpp. The lists name what a single-threaded libevent worker
// needs plus what each role's job adds; a role that grows a feature adds its calls here, in
// the same commit. Names are resolved at run time so the table holds for every architecture.
#include "common/ipc/sandbox.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#ifdef __linux__
#include <fcntl.h>
#include <seccomp.h>
#include <sys/prctl.h>
#endif

namespace postern::sandbox {

#ifdef __linux__
namespace {

// Every child: its event loop, IPC with descriptors, memory, time, logging (syslog keeps its
// socket from before the chroot), and dying properly (abort raises SIGABRT).
constexpr std::string_view kBase[] = {
    "read",           "write",         "readv",
    "writev",         "recvmsg",       "sendmsg",
    "sendto",         "recvfrom",      "close",
    "fcntl",          "fstat",         "newfstatat",
    "lseek",          "epoll_wait",    "epoll_pwait",
    "epoll_ctl",      "poll",          "ppoll",
    "mmap",           "munmap",        "mremap",
    "mprotect",       "brk",           "madvise",
    "futex",          "getpid",        "gettid",
    "getrandom",      "clock_gettime", "clock_getres",
    "gettimeofday",   "time",          "rt_sigreturn",
    "rt_sigprocmask", "rt_sigaction",  "tgkill",
    "exit",           "exit_group",    "restart_syscall",
    "sched_yield",    "nanosleep",     "clock_nanosleep",
};

// What sanitizer runtimes call on their own (reports, stack traces, shadow memory).
constexpr std::string_view kSanitizer[] = {
    "sigaltstack",
    "prctl",
    "openat",
    "readlink",
    "getrlimit",
    "prlimit64",
    "sched_getaffinity",
    "clone",
    "clone3",
    "wait4",
    "ptrace",
    "getppid",
    "pipe2",
    "dup2",
    "dup3",
    "execve",
    "munlock",
    "mlock",
    "setrlimit",
    "rt_sigtimedwait",
    "kill",
};

std::span<const std::string_view> role_calls(Role role) {
  // The spool: create, write (a commit record at its offset), sync, rename, list, remove; a
  // pipe to its commit thread (the thread itself: see the clone rule below).
  static constexpr std::string_view kQueue[] = {"openat",   "mkdirat",   "fsync",    "fdatasync",
                                                "renameat", "renameat2", "unlinkat", "getdents64",
                                                "pipe2",    "syncfs",    "pread64",  "pwrite64"};
  // smtpctl clients and metrics scrapers accepted; evhttp shuts a connection down before it
  // closes it (and reads with ioctl(FIONREAD), below).
  static constexpr std::string_view kControl[] = {"accept4", "getsockopt", "shutdown"};
  // Tables arrive as descriptors (read again at every reload) or are :include: files.
  static constexpr std::string_view kLookup[] = {"pread64"};
  // Sessions on sockets the listeners accept; nothing is opened by name.
  static constexpr std::string_view kSmtp[] = {"accept4",  "getsockopt",  "setsockopt",
                                               "shutdown", "getsockname", "getpeername"};
  // Maildirs: create, write, sync, rename or link into new/. A delivery helper's copy of a
  // message: a memfd filled from the spool file (then sealed with fcntl).
  static constexpr std::string_view kMda[] = {
      "openat", "mkdir",     "mkdirat", "rename",   "renameat",     "renameat2",
      "fsync",  "fdatasync", "unlink",  "unlinkat", "pread64",      "lstat",
      "stat",   "ftruncate", "syncfs",  "linkat",   "memfd_create", "sendfile"};
  // Outbound SMTP: a connect's outcome (SO_ERROR), and the message read at offsets from the
  // descriptor the queue hands over (TCP sockets: see allow_sockets).
  static constexpr std::string_view kMta[] = {"getsockopt", "pread64"};
  switch (role) {
    case Role::mda:
      return kMda;
    case Role::mta:
      return kMta;
    case Role::queue:
      return kQueue;
    case Role::control:
      return kControl;
    case Role::lookup:
      return kLookup;
    case Role::smtp:
      return kSmtp;
    default:
      return {};
  }
}

constexpr bool kSanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

// Async-signal-safe: names the refused call on stderr, then dies of SIGSYS so the parent
// logs it and restarts the process.
void on_sigsys(int, siginfo_t* info, void*) {
  char line[96] = "seccomp: refused system call ";
  size_t n = std::strlen(line);
  char digits[16];
  size_t d = 0;
  unsigned v = static_cast<unsigned>(info->si_syscall);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < sizeof digits);
  while (d > 0 && n < sizeof line - 2) line[n++] = digits[--d];
  line[n++] = '\n';
  (void)!write(STDERR_FILENO, line, n);
  signal(SIGSYS, SIG_DFL);
  raise(SIGSYS);
}

struct FilterDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};

// Sockets by role. glibc's syslog() opens a new unix socket to /dev/log after a failed send
// (syslogd restarted): queue, mda and lookup may do that, and connect it. smtp, mta and
// control get every socket they use from the parent or accept it, and live in an empty
// chroot where /dev/log does not exist: their socket(AF_UNIX) fails with EPERM (so a syslog
// reconnect costs log lines, not the process), and any other socket, socketpair, bind or
// connect kills them. An AF_UNIX socket made there could still reach the abstract namespace,
// which no chroot hides. mta alone may make TCP sockets (AF_INET/AF_INET6 SOCK_STREAM, for
// outbound SMTP), connect them, and bind them to a source address (smtpd.yaml relay_source):
// bind only with the length of an IPv4 or IPv6 address (a filter cannot read the address
// itself), and of the socket options only IP_BIND_ADDRESS_NO_PORT and TCP_NODELAY.
Status allow_sockets(scmp_filter_ctx ctx, Role role) {
  const int socket_nr = SCMP_SYS(socket);
  const bool jailed_network = role == Role::smtp || role == Role::mta || role == Role::control;
  if (!jailed_network) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, socket_nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) != 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 0) != 0)
      return make_error("seccomp: cannot allow unix sockets");
    return ok_status();
  }
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), socket_nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) !=
      0)
    return make_error("seccomp: cannot refuse unix sockets");
  if (role != Role::mta) return ok_status();
  // The type may carry SOCK_NONBLOCK and SOCK_CLOEXEC; the protocol is 0 or TCP, never SCTP.
  constexpr scmp_datum_t kTypeMask =
      0xffffffffu & ~static_cast<scmp_datum_t>(SOCK_NONBLOCK | SOCK_CLOEXEC);
  for (const int family : {AF_INET, AF_INET6})
    for (const int protocol : {0, static_cast<int>(IPPROTO_TCP)})
      if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, socket_nr, 3,
                           SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family)),
                           SCMP_A1(SCMP_CMP_MASKED_EQ, kTypeMask, SOCK_STREAM),
                           SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(protocol))) != 0)
        return make_error("seccomp: cannot allow TCP sockets");
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 0) != 0)
    return make_error("seccomp: cannot allow connect");
  for (const size_t length : {sizeof(sockaddr_in), sizeof(sockaddr_in6)})
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(bind), 1,
                         SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(length))) != 0)
      return make_error("seccomp: cannot allow bind");
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2,
                       SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(IPPROTO_TCP)),
                       SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(TCP_NODELAY))) != 0)
    return make_error("seccomp: cannot allow TCP_NODELAY");
#ifdef IP_BIND_ADDRESS_NO_PORT
  if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2,
                       SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(IPPROTO_IP)),
                       SCMP_A2(SCMP_CMP_EQ, static_cast<scmp_datum_t>(IP_BIND_ADDRESS_NO_PORT))) !=
      0)
    return make_error("seccomp: cannot allow IP_BIND_ADDRESS_NO_PORT");
#endif
  return ok_status();
}

}  // namespace

Status install_syscall_filter(Role role) {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSYS, &sa, nullptr) != 0) return make_error("cannot handle SIGSYS");

  std::unique_ptr<void, FilterDeleter> ctx(seccomp_init(SCMP_ACT_TRAP));
  if (!ctx) return make_error("seccomp_init failed");
  auto allow = [&](std::string_view name) -> Status {
    const int nr = seccomp_syscall_resolve_name(std::string(name).c_str());
    if (nr == __NR_SCMP_ERROR) return ok_status();  // not on this architecture
    const int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc != 0)
      return make_error("seccomp: cannot allow " + std::string(name) + ": " + std::strerror(-rc));
    return ok_status();
  };
  for (std::string_view name : kBase)
    if (Status st = allow(name); !st.ok()) return st;
  for (std::string_view name : role_calls(role))
    if (Status st = allow(name); !st.ok()) return st;
  if (kSanitized)
    for (std::string_view name : kSanitizer)
      if (Status st = allow(name); !st.ok()) return st;
  if (Status st = allow_sockets(ctx.get(), role); !st.ok()) return st;
  if (role == Role::mda) {
    // LMTP servers may listen on TCP as well as on unix sockets.
    for (const int family : {AF_INET, AF_INET6})
      if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                           SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))) != 0)
        return make_error("seccomp: cannot allow LMTP sockets");
    for (const char* name : {"setsockopt", "getsockopt"})
      if (Status st = allow(name); !st.ok()) return st;
  }
  if (role == Role::lookup) {
    // DNS: libunbound's UDP (and TCP, for truncated answers) sockets, on random source ports.
    for (const int family : {AF_INET, AF_INET6})
      if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                           SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))) != 0)
        return make_error("seccomp: cannot allow DNS sockets");
    // (getpeername, getsockname: the addresses of a session smtp hands over, see RelayCheck.)
    for (const char* name : {"bind", "setsockopt", "getsockopt", "getsockname", "getpeername"})
      if (Status st = allow(name); !st.ok()) return st;
  }
  if (role == Role::lookup && !kSanitized) {  // sanitized builds allow openat outright
    // Reading only: :include: files and the system's account database (NSS). A flag that
    // could create, truncate or write is refused.
    if (seccomp_rule_add(
            ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
            SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND, O_RDONLY)) != 0)
      return make_error("seccomp: cannot allow read-only openat");
  }
  if (role == Role::lookup) {
    // glibc's systemd NSS module reads the capability bounding set and resolves paths
    // (sanitized builds too: theirs allow neither).
    if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                         SCMP_A0(SCMP_CMP_EQ, PR_CAPBSET_READ)) != 0 ||
        seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(readlinkat), 0) != 0)
      return make_error("seccomp: cannot allow what NSS needs");
  }
  if (role == Role::smtp || role == Role::mda || role == Role::mta || role == Role::control) {
    // libevent's bufferevents (smtp's sessions, mda's LMTP client, mta's connections,
    // control's metrics scrapers through evhttp) ask how much is readable;
    // no other ioctl.
    if (seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                         SCMP_A1(SCMP_CMP_EQ, FIONREAD)) != 0)
      return make_error("seccomp: cannot allow ioctl(FIONREAD)");
  }
  const bool threaded = role == Role::queue || role == Role::lookup || role == Role::mda;
  if (threaded) {
    // A new thread registers its robust futex list and rseq area; std::thread asks how many
    // CPUs it may use. (Sanitized builds too: they allow clone, not these.)
    for (const char* name : {"set_robust_list", "rseq", "sched_getaffinity"})
      if (Status st = allow(name); !st.ok()) return st;
  }
  if (threaded && !kSanitized) {
    // (Sanitized builds allow clone outright.) Threads only (queue's commit worker, lookup's
    // password hashing, mda's Maildir fanout), never a new process: clone must carry
    // CLONE_THREAD, and clone3, whose flags live in memory a filter cannot read, says ENOSYS
    // so that glibc falls back to clone.
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc == 0) rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    if (rc != 0) return make_error("seccomp: cannot allow threads");
  }
  if (const int rc = seccomp_load(ctx.get()); rc != 0)
    return make_error(std::string("seccomp_load: ") + std::strerror(-rc));
  return ok_status();
}

#else

Status install_syscall_filter(Role) {
  return ok_status();
}

#endif

}  // namespace postern::sandbox
