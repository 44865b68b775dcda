// Command delivery; see command.hpp. Owns the command's process from fork to reaping: its
// process group, its two pipes and its time limit. The child side of fork runs only
// async-signal-safe calls on data prepared before the fork (the caller may have threads).
#include "mda/command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/io.hpp"

namespace postern::mda {
namespace {

constexpr size_t kReadChunk = 65536;
// Output kept for the detail: the tail is what explains a failure.
constexpr size_t kOutputKept = 1024;
// After SIGTERM the group has this long to go before SIGKILL.
constexpr int kKillGraceMs = 2000;
// Without a pidfd (kernels before 5.3), how often the child's exit is looked for.
constexpr int kExitPollMs = 100;
constexpr const char* kShell = "/bin/sh";

CommandResult temporary(std::string detail) {
  return {CommandOutcome::temporary_failure, "4.3.0", std::move(detail)};
}

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// CRLF -> LF on a stream cut into arbitrary chunks: a CR at the end of one chunk waits for
// the next. A CR not followed by LF is kept.
class LfConverter {
 public:
  void convert(std::string_view in, std::string& out) {
    for (const char c : in) {
      if (pending_cr_ && c != '\n') out += '\r';
      pending_cr_ = c == '\r';
      if (!pending_cr_) out += c;
    }
  }
  void finish(std::string& out) {
    if (pending_cr_) out += '\r';
    pending_cr_ = false;
  }

 private:
  bool pending_cr_ = false;
};

// A command may exit without reading all of its input; writing on then raises SIGPIPE, whose
// default action would kill this process. Blocking it in this thread (rather than setting
// SIG_IGN, process-wide state that belongs to main) turns it into EPIPE; the signal left
// pending is ours (a write error raises it in the writing thread) and is consumed here,
// unless one was pending already.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &saved_);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlock() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{};
      while (sigtimedwait(&set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t saved_{};
  bool was_pending_ = false;
};

// The forked command: until reaped, leaving scope kills its whole group and reaps it, so no
// path (an early return, an exception) leaves a zombie or a running command.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (pid_ > 0) {
      kill_group(SIGKILL);
      (void)reap();
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The command leads its own group (set on both sides of fork), so this reaches whatever it
  // started too.
  void kill_group(int sig) const { kill(-pid_, sig); }
  // Whether it has exited, without reaping: while it is a zombie its pid, and so the group
  // id, cannot be reused, and the group can still be signalled safely.
  bool exited() const {
    siginfo_t info{};
    while (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
      if (errno != EINTR) return true;  // ECHILD: someone else reaped it (SIGCHLD ignored?)
    return info.si_pid == pid_;
  }
  // Waits for it; the wait status, or -1 when it cannot be had (ECHILD).
  int reap() {
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return got < 0 ? -1 : status;
  }

 private:
  pid_t pid_;
};

// Keeps the output's tail and makes its last non-empty line printable.
class OutputTail {
 public:
  void add(std::string_view bytes) {
    text_.append(bytes);
    if (text_.size() > 2 * kOutputKept) text_.erase(0, text_.size() - kOutputKept);
  }
  std::string last_line() const {
    std::string_view rest(text_);
    if (rest.size() > kOutputKept) rest.remove_prefix(rest.size() - kOutputKept);
    std::string_view line;
    while (!rest.empty()) {
      const size_t nl = rest.find_last_of("\r\n");
      std::string_view candidate = nl == std::string_view::npos ? rest : rest.substr(nl + 1);
      const size_t first = candidate.find_first_not_of(" \t");
      if (first != std::string_view::npos) {
        line = candidate.substr(first);
        break;
      }
      if (nl == std::string_view::npos) break;
      rest = rest.substr(0, nl);
    }
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    std::string out;
    out.reserve(line.size());
    // The detail goes into logs and into a bounce's Diagnostic-Code: ASCII only.
    for (const unsigned char c : line)
      out += c == '\t' ? ' ' : (c < 0x20 || c >= 0x7f) ? '?' : static_cast<char>(c);
    return out;
  }

 private:
  std::string text_;
};

Status set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return errno_error("fcntl");
  return ok_status();
}

// The child dup2s its pipe ends onto 0, 1 and 2; an end that already is one of those (this
// process runs with a standard descriptor closed) would be clobbered or, dup2'd onto itself,
// keep its close-on-exec flag. Moving every end to 3 or above avoids both.
Status lift_above_stdio(UniqueFd& fd) {
  if (fd.get() > STDERR_FILENO) return ok_status();
  const int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return errno_error("fcntl(F_DUPFD_CLOEXEC)");
  fd.reset(moved);
  return ok_status();
}

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

Result<Pipe> make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return errno_error("pipe");
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  if (Status st = lift_above_stdio(p.read_end); !st.ok()) return st.error();
  if (Status st = lift_above_stdio(p.write_end); !st.ok()) return st.error();
  return p;
}

// Everything the child needs, built before fork: after it, no allocation.
struct ExecPlan {
  std::vector<std::string> env_home;  // HOME=home
  std::vector<std::string> env_root;  // HOME=/ (when home cannot be entered)
  std::vector<char*> envp_home;
  std::vector<char*> envp_root;
  std::string command;
  std::vector<char*> argv;
  std::string home;
  int max_fd = 0;
};

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void make_plan(const CommandDelivery& d, ExecPlan& plan) {
  plan.home = d.home.empty() ? "/" : d.home;
  const size_t at = d.recipient.rfind('@');
  const std::string local = at == std::string::npos ? d.recipient : d.recipient.substr(0, at);
  const std::string domain = at == std::string::npos ? "" : d.recipient.substr(at + 1);
  std::vector<std::string> common = {
      "PATH=/usr/local/bin:/usr/bin:/bin",
      "USER=" + d.user,
      "LOGNAME=" + d.user,
      "SHELL=/bin/sh",
      "SENDER=" + d.sender,
      "RECIPIENT=" + d.recipient,
      "LOCAL=" + local,
      "DOMAIN=" + domain,
  };
  plan.env_home = common;
  plan.env_home.push_back("HOME=" + plan.home);
  plan.env_root = std::move(common);
  plan.env_root.emplace_back("HOME=/");
  plan.envp_home = pointers(plan.env_home);
  plan.envp_root = pointers(plan.env_root);
  plan.command = d.command;
  // execve takes char* const[] for C's sake; it never writes through them.
  plan.argv = {const_cast<char*>("sh"),  // NOLINT(cppcoreguidelines-pro-type-const-cast)
               const_cast<char*>("-c"),  // NOLINT(cppcoreguidelines-pro-type-const-cast)
               plan.command.data(), nullptr};
  const long open_max = sysconf(_SC_OPEN_MAX);
  plan.max_fd = open_max > 0 && open_max < (1L << 20) ? static_cast<int>(open_max) : (1 << 20);
}

void child_fail(const char* what) {
  (void)!write(STDERR_FILENO, what, strlen(what));
}

// In the forked child: async-signal-safe calls only. Never returns.
[[noreturn]] void run_child(const ExecPlan& plan, int stdin_fd, int output_fd) {
  setpgid(0, 0);
  if (dup2(stdin_fd, STDIN_FILENO) < 0 || dup2(output_fd, STDOUT_FILENO) < 0 ||
      dup2(output_fd, STDERR_FILENO) < 0)
    _exit(EX_TEMPFAIL);
  // Everything is close-on-exec already; this also catches descriptors that other code in
  // this process opened without the flag.
  bool closed = false;
#ifdef SYS_close_range
  closed = syscall(SYS_close_range, 3U, ~0U, 0U) == 0;
#endif
  if (!closed)
    for (int fd = 3; fd < plan.max_fd; ++fd) close(fd);
  // The mda ignores SIGPIPE and the like; a command must start with the defaults.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  char* const* envp = plan.envp_home.data();
  if (chdir(plan.home.c_str()) != 0) {
    envp = plan.envp_root.data();
    if (chdir("/") != 0) {
      child_fail("postern: cannot chdir to /\n");
      _exit(EX_TEMPFAIL);
    }
  }
  execve(kShell, plan.argv.data(), envp);
  child_fail("postern: cannot execute /bin/sh\n");
  _exit(127);
}

CommandResult result_from_status(int status, bool timed_out, unsigned timeout,
                                 const std::string& last_line) {
  const std::string said = last_line.empty() ? "" : ": " + last_line;
  if (timed_out)
    return temporary("command timed out after " + std::to_string(timeout) + " s" + said);
  if (status < 0) return temporary("command's exit status was lost");
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    std::string name = std::to_string(sig);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    if (const char* abbrev = sigabbrev_np(sig); abbrev != nullptr)
      name += std::string(" (SIG") + abbrev + ")";
#endif
    return temporary("command killed by signal " + name + said);
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::string detail = "command exited with status " + std::to_string(code) + said;
  switch (code) {
    case 0:
      return {CommandOutcome::delivered, "2.0.0", std::move(detail)};
    case EX_TEMPFAIL:
    case 126:  // sh: found but not executable
    case 127:  // sh: not found, or /bin/sh itself could not be run
    case -1:
      return temporary(std::move(detail));
    case EX_NOUSER:
      return {CommandOutcome::permanent_failure, "5.1.1", std::move(detail)};
    case EX_NOHOST:
      return {CommandOutcome::permanent_failure, "5.1.2", std::move(detail)};
    case EX_NOPERM:
      return {CommandOutcome::permanent_failure, "5.7.1", std::move(detail)};
    default:
      return {CommandOutcome::permanent_failure, "5.3.0", std::move(detail)};
  }
}

CommandResult run(const CommandDelivery& d) {
  if (d.message.fd < 0) return temporary("no message to deliver");
  ExecPlan plan;
  make_plan(d, plan);
  const unsigned timeout = std::max(d.timeout_seconds, 1U);

  Result<Pipe> input = make_pipe();
  if (!input.ok()) return temporary(input.error().message);
  Result<Pipe> output = make_pipe();
  if (!output.ok()) return temporary(output.error().message);
  if (Status st = set_nonblocking(input->write_end.get()); !st.ok())
    return temporary(st.error().message);
  if (Status st = set_nonblocking(output->read_end.get()); !st.ok())
    return temporary(st.error().message);

  const SigpipeBlock sigpipe_blocked;
  // Declared before the child so that they outlive it: on an early return the command is
  // killed before its stdin closes, and never takes a truncated message for a whole one.
  UniqueFd to_child = std::move(input->write_end);
  UniqueFd from_child = std::move(output->read_end);
  UniqueFd exit_fd;
  // All signals are blocked across fork so that no handler of this process runs in the child
  // before it has reset them.
  sigset_t all;
  sigset_t before_fork;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before_fork);
  const pid_t pid = fork();
  const int fork_errno = errno;
  if (pid == 0) run_child(plan, input->read_end.get(), output->write_end.get());
  pthread_sigmask(SIG_SETMASK, &before_fork, nullptr);
  if (pid < 0) return temporary(std::string("cannot fork: ") + strerror(fork_errno));
  ChildProcess child(pid);
  // The child sets its group too; doing it here as well means the group exists before any
  // kill_group (EACCES once the child has exec'd: it was done by then).
  setpgid(pid, pid);
  input->read_end.reset();
  output->write_end.reset();
  // pidfd_open makes the child's exit a poll event; without it, exits are polled for.
#ifdef SYS_pidfd_open
  exit_fd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0U)));
#endif

  LfConverter lf;
  std::string pending;  // converted bytes not yet taken by the pipe
  size_t pending_at = 0;
  uint64_t message_at = 0;
  bool message_done = false;
  bool writing = true;
  OutputTail tail;
  bool timed_out = false;
  int64_t deadline = now_ms() + static_cast<int64_t>(timeout) * 1000;
  std::vector<char> chunk(kReadChunk);
  lf.convert(d.header, pending);

  auto drain_output = [&] {
    char buf[4096];
    // Bounded: a background job may keep writing after the command has exited.
    for (size_t total = 0; from_child && total < 16 * kOutputKept;) {
      const ssize_t n = read(from_child.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n <= 0) {
        from_child.reset();
        return;
      }
      tail.add(std::string_view(buf, static_cast<size_t>(n)));
      total += static_cast<size_t>(n);
    }
  };

  for (;;) {
    if (child.exited()) {
      // What it wrote before exiting is in the pipe now; a background job holding the pipe
      // open is not waited for.
      drain_output();
      break;
    }
    const int64_t now = now_ms();
    if (now >= deadline) {
      if (timed_out) break;  // the grace period is over
      timed_out = true;
      writing = false;  // stdin stays open: no EOF after a partial message
      child.kill_group(SIGTERM);
      deadline = now + kKillGraceMs;
      continue;
    }
    // Refill from the message when the pipe has taken everything converted so far.
    while (writing && to_child && pending_at == pending.size() && !message_done) {
      pending.clear();
      pending_at = 0;
      const Result<size_t> n = read_message_at(d.message, message_at, chunk.data(), chunk.size());
      // A truncated message must not be delivered: the command is killed (leaving scope)
      // before it sees EOF.
      if (!n.ok()) return temporary("reading the message: " + n.error().message);
      if (n.value() == 0) {
        lf.finish(pending);
        message_done = true;
      } else {
        message_at += n.value();
        lf.convert(std::string_view(chunk.data(), n.value()), pending);
      }
    }
    if (to_child && pending_at == pending.size() && message_done) to_child.reset();  // EOF

    pollfd fds[3];
    nfds_t nfds = 0;
    int to_child_slot = -1;
    int from_child_slot = -1;
    if (writing && to_child) {
      to_child_slot = static_cast<int>(nfds);
      fds[nfds++] = {to_child.get(), POLLOUT, 0};
    }
    if (from_child) {
      from_child_slot = static_cast<int>(nfds);
      fds[nfds++] = {from_child.get(), POLLIN, 0};
    }
    if (exit_fd) fds[nfds++] = {exit_fd.get(), POLLIN, 0};
    int wait_ms = static_cast<int>(std::min<int64_t>(deadline - now, 60000));
    if (!exit_fd) wait_ms = std::min(wait_ms, kExitPollMs);
    if (poll(fds, nfds, wait_ms) < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      return temporary(std::string("poll: ") + strerror(saved));
    }
    if (to_child_slot >= 0 && fds[to_child_slot].revents != 0) {
      const std::string_view rest = std::string_view(pending).substr(pending_at);
      const ssize_t n = write(to_child.get(), rest.data(), rest.size());
      if (n >= 0) {
        pending_at += static_cast<size_t>(n);
      } else if (errno != EINTR && errno != EAGAIN) {
        // EPIPE: the command stopped reading; its exit status alone decides.
        to_child.reset();
      }
    }
    if (from_child_slot >= 0 && fds[from_child_slot].revents != 0) drain_output();
  }

  if (timed_out) child.kill_group(SIGKILL);  // whatever outlived SIGTERM or its grace
  const int status = child.reap();
  return result_from_status(status, timed_out, timeout, tail.last_line());
}

}  // namespace

CommandResult deliver_to_command(const CommandDelivery& d) {
  try {
    return run(d);
  } catch (...) {  // std::bad_alloc; the child, if any, was killed and reaped on the way out
    return {CommandOutcome::temporary_failure, "4.3.0", "out of memory"};
  }
}

}  // namespace postern::mda
