// Command delivery: one aliases(5) "|command" or per-user command run as /bin/sh -c, the
// message on its stdin with LF line ends, its exit status mapped to a DSN. The command text is
// the admin's; envelope data reaches it only as environment values. Never touches the spool.
#pragma once

#include <cstdint>
#include <string>

#include "common/util/io.hpp"

namespace postern::mda {

struct CommandDelivery {
  // Run as /bin/sh -c command: the text is the admin's (an aliases file, the config), never
  // envelope data.
  std::string command;
  // Working directory and HOME; "/" if empty or it cannot be entered.
  std::string home;
  // USER and LOGNAME.
  std::string user;
  // SENDER (empty for <>).
  std::string sender;
  // RECIPIENT (the full address); LOCAL and DOMAIN are it split at the last '@'.
  std::string recipient;
  // Written to stdin before the message ("Return-Path: ...\r\nDelivered-To: ...\r\n").
  std::string header;
  // The message (CRLF lines), read with pread from offset 0: the descriptor's offset is
  // shared with dups and is left alone.
  MessageData message;
  // For the whole run; 0 is taken as 1.
  unsigned timeout_seconds = 300;
};

enum class CommandOutcome : uint8_t { delivered, temporary_failure, permanent_failure };

struct CommandResult {
  CommandOutcome outcome;
  std::string dsn;     // "2.0.0", "4.3.0", "5.3.0" ...
  std::string detail;  // for the log and a bounce, e.g.
                       // "command exited with status 1: <last line of its output>"
};

// Runs the command as the calling process's user (the caller has already become the right
// user) and waits for it. Exit 0: delivered; EX_TEMPFAIL, a signal, the time limit, 126/127
// (sh could not run it) or our own failure: temporary; EX_NOUSER, EX_NOHOST, EX_NOPERM and any
// other status: permanent. SIGPIPE is blocked in the calling thread while it runs (a command
// may exit without reading its input), and one it caused is consumed. Never throws.
CommandResult deliver_to_command(const CommandDelivery& d);

}  // namespace postern::mda
