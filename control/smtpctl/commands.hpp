// smtpctl's command words: what an administrator typed, turned into the request the daemon
// gets (or a local command: monitor, encrypt), with every mistake said before anything is sent.
// Pure: no socket, no output; main.cpp does those.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "common/mail/envelope.hpp"
#include "common/util/result.hpp"
#include "control/api.hpp"

namespace postern::smtpctl {

// What smtpctl's exit status says (smtpctl(8) EXIT STATUS).
enum class Exit : int {
  ok = 0,
  refused = 1,      // the daemon answered that it could not (no such message, a bad table...)
  usage = 2,        // the command line is wrong; nothing was sent
  unreachable = 3,  // no daemon on the socket (not running), or the configuration is unreadable
  no_answer = 4,    // the daemon did not answer in time, or answered what smtpctl cannot read
};

// Commands smtpctl runs itself, without one request and answer.
struct Monitor {
  uint32_t count = 0;  // lines to print; 0: until interrupted
};
struct Encrypt {
  std::string password;  // empty: read it from standard input
  bool given = false;
};

using Request = std::variant<msg::CtlShowStatus, msg::CtlShowQueue, msg::CtlShowMessage,
                             msg::CtlShowMx, msg::CtlShowRelays, msg::CtlShowStats,
                             msg::CtlUpdateTable, msg::CtlSchedule, msg::CtlRemove, msg::CtlPause,
                             msg::CtlSetVerbose, msg::CtlStop, msg::CtlReload, Monitor, Encrypt>;

// The words after the options; json: --json was given (only show commands take it).
Result<Request> parse_command(const std::vector<std::string>& words, bool json);

// "90", "90s", "15m", "2h", "3d", "1w" as seconds; at most a year.
Result<uint32_t> parse_age(const std::string& text);

}  // namespace postern::smtpctl
