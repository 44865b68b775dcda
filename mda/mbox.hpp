// mbox delivery: appends one message to a mailbox file under both a dotlock and an fcntl
// lock (what mail readers on Linux and the BSDs honour), as "From " line plus the message in
// mboxrd form (">From " quoting that round-trips, LF line ends). A failed write is truncated
// back, so the mailbox never holds half a message.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "common/util/io.hpp"
#include "common/util/result.hpp"

namespace postern::mda {

// mboxrd: every line matching ^>*From  gets one more '>'; CRLF becomes LF.
std::string mboxrd_escape(std::string_view message);

Status deliver_to_mbox(const std::string& path, const std::string& sender,
                       const std::string& header, const MessageData& data, time_t now);

}  // namespace postern::mda
