// What the parent does between fork and exec of a program of its own (a child or a delivery
// helper), and how it describes one that ended. The forked side runs only async-signal-safe
// code: the parent may have anything open.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::smtpd {

// In a forked child before exec: the channel on kParentChannelFd, the log relay (when given)
// on log::kRelayFd, no other descriptor above them, no blocked signal.
void keep_only_channel(int fd, int relay_fd = -1);

// "exited with status 1", "was killed by signal 9 (SIGKILL)".
std::string describe_wait_status(int wait_status);

// argv for one of Postern's programs: its name, -d in the foreground, -v when verbose.
std::vector<std::string> program_arguments(std::string_view executable, bool foreground);
std::vector<char*> argv_of(std::vector<std::string>& arguments);

}  // namespace postern::smtpd
