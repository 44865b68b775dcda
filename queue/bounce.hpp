// Delivery status notifications (RFC 3464, RFC 3461): the multipart/report message the queue
// sends back to a sender when recipients failed for good. Pure text building: the caller
// decides who gets one (never the null sender) and queues it like any other message.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/envelope.hpp"

namespace postern::queue {

struct FailedRecipient {
  const Recipient* recipient = nullptr;
  std::string status;      // "5.1.1"
  std::string diagnostic;  // why, for Diagnostic-Code
};

// Whether a failure of this recipient is reported (RFC 3461 4.1: NOTIFY=NEVER or a list
// without FAILURE says no; no NOTIFY means the default, which reports failures).
bool wants_failure_report(const Recipient& recipient);

// The whole bounce message: headers, a human part, the machine-readable delivery-status part
// and the original (all of it, or its headers when RET=HDRS). Lines end with CRLF.
std::string make_bounce(const Envelope& original, const std::vector<FailedRecipient>& failed,
                        std::string_view original_message, const std::string& hostname,
                        const std::string& bounce_id, time_t now);

}  // namespace postern::queue
