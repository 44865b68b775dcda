// The parent's end of one child's log relay (common/util/log.hpp): the child writes each line
// as a datagram, the parent writes it out under the child's program name and the pid it
// spawned, never a name or pid the child claims, and escapes it again (a child taken over
// by a client can write any bytes, not forge a line of another process).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"

namespace postern::smtpd {

class LogRelay {
 public:
  // nullptr when no socket pair can be had: the child then logs by itself (log.hpp).
  static std::unique_ptr<LogRelay> make(event_base* base, std::string ident);
  LogRelay(const LogRelay&) = delete;
  LogRelay& operator=(const LogRelay&) = delete;
  ~LogRelay();

  // The descriptor the forked child moves to log::kRelayFd.
  int child_end() const { return child_end_.get(); }
  // After fork: the parent's copy of the child's end goes, lines are read from now on.
  void started(pid_t pid);
  // Writes every line still waiting (the child exited; its last lines must not be lost).
  void drain();

 private:
  LogRelay(event_base* base, std::string ident, UniqueFd ours, UniqueFd theirs);
  // Reads and writes out one waiting line; false when none waits.
  bool relay_one();

  event_base* base_;
  std::string ident_;
  UniqueFd ours_;
  UniqueFd child_end_;
  pid_t pid_ = 0;
  std::unique_ptr<FdWatcher> watcher_;
};

}  // namespace postern::smtpd
