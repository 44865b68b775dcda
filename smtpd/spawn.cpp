// Fork and exec for the parent; see spawn.hpp.
#include "smtpd/spawn.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/ipc/process.hpp"
#include "common/util/log.hpp"

namespace postern::smtpd {

void keep_only_channel(int fd, int relay_fd) {
  // Out of the way first should the relay sit where the channel goes.
  if (relay_fd == kParentChannelFd) relay_fd = fcntl(relay_fd, F_DUPFD, log::kRelayFd + 1);
  if (fd == kParentChannelFd) {
    fcntl(fd, F_SETFD, 0);
  } else if (dup2(fd, kParentChannelFd) < 0) {
    _exit(127);
  }
  int first_closed = kParentChannelFd + 1;
  if (relay_fd >= 0) {
    if (relay_fd == log::kRelayFd) {
      fcntl(relay_fd, F_SETFD, 0);
    } else if (dup2(relay_fd, log::kRelayFd) < 0) {
      _exit(127);
    }
    first_closed = log::kRelayFd + 1;
  }
  close_range(static_cast<unsigned>(first_closed), ~0U, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

std::string describe_wait_status(int wait_status) {
  if (WIFEXITED(wait_status))
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* abbrev = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) +
           (abbrev != nullptr ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "stopped (status " + std::to_string(wait_status) + ")";
}

std::vector<std::string> program_arguments(std::string_view executable, bool foreground) {
  std::vector<std::string> args{std::string(executable)};
  if (foreground) args.emplace_back("-d");
  if (log::verbose()) args.emplace_back("-v");
  return args;
}

std::vector<char*> argv_of(std::vector<std::string>& arguments) {
  std::vector<char*> argv;
  argv.reserve(arguments.size() + 1);
  for (auto& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

}  // namespace postern::smtpd
