// smtpctl run as sendmail, mailq or newaliases (sendmail(8)): the submission interface that
// cron, scripts and PHP expect. Runs with the caller's privileges and no others.
#pragma once

#include <string_view>

namespace postern::smtpctl {

// The names under which smtpctl behaves as sendmail(8).
bool is_sendmail_name(std::string_view program);

// smtpctl's own command line (main.cpp), for what sendmail asks of a running daemon: mailq is
// "show queue", newaliases "update table" of each aliases file, -q "schedule all".
using ControlCommand = int (*)(int argc, char** argv);

int sendmail_main(int argc, char** argv, ControlCommand control);

}  // namespace postern::smtpctl
