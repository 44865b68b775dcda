// One destination delivered at once, as the calling process's user: a Maildir (with flushes
// of its own), an mbox file or a command. Used by the delivery helper, which runs as the
// recipient's system user (or as mda's user outside mda's sandbox, for commands).
#pragma once

#include "common/ipc/messages.hpp"
#include "mda/api.hpp"
#include "smtpd/api.hpp"

namespace postern::mda {

// "Return-Path: <sender>\r\nDelivered-To: mailbox\r\n", put above every local delivery.
std::string delivery_header(const std::string& sender, const std::string& mailbox);

// LMTP and forward destinations are not delivered here.
msg::HelperResult deliver_destination(const msg::HelperDeliver& job, int message_fd);

}  // namespace postern::mda
