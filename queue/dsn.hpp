// Delivery status notifications (RFC 3464, RFC 3461): the multipart/report message the queue
// sends back to a sender about some of a message's recipients: those that failed for good, and
// those still waiting when their NOTIFY asked for DELAY, and those delivered (or expanded by an
// alias) when it asked for SUCCESS. Pure text
// building: the caller decides who gets one (never the null sender) and queues it like any
// other message.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/envelope.hpp"

namespace postern::queue {

// RFC 3464 2.3.3 Action: what happened to a recipient. "delayed": not delivered yet, still
// being retried; "delivered": into its mailbox; "expanded": an alias sent it on to several
// destinations (RFC 3461 6.2.7.4); "relayed": sent on to a server that does not take DSN
// requests, so no report of its delivery will come (RFC 3461 4.2, 6.2.7.2).
enum class DsnAction : uint8_t { failed, delayed, delivered, expanded, relayed };

struct ReportedRecipient {
  const Recipient* recipient = nullptr;
  DsnAction action = DsnAction::failed;
  std::string status;      // "5.1.1", "2.0.0"
  std::string diagnostic;  // what happened, for Diagnostic-Code
  time_t retry_until = 0;  // delayed: when the queue gives up (Will-Retry-Until)
  // The remote server whose reply decided it (a DSN's Remote-MTA), empty when none did; then
  // diagnostic is that reply as the server gave it ("550 5.1.1 no such user").
  std::string remote_mta;
  // How the connection to remote_mta was protected ("TLSv1.3 ... (verified mx.example.org)",
  // "none"); empty when no server answered.
  std::string tls;
};

// Whether the sender hears of this recipient's outcome (RFC 3461 4.1): failures unless NOTIFY
// is NEVER or a list without FAILURE (no NOTIFY reports failures only); delays only when it
// has DELAY; deliveries and expansions only when it has SUCCESS.
bool wants_report(const Recipient& recipient, DsnAction action);

// The NOTIFY an alias's members get when the alias expanded to several destinations: its
// SUCCESS was answered by the "expanded" report, so the members do not report success again
// (RFC 3461 6.2.7.4); a NOTIFY of SUCCESS alone leaves nothing to report, NEVER.
DsnNotify notify_for_members(const DsnNotify& alias);

// What a notification is about, as its subject says: failed if any recipient did, else
// delayed if any is, else delivered.
DsnAction headline(const std::vector<ReportedRecipient>& reported);

// The whole notification: headers, a human part, the machine-readable delivery-status part
// and the original: all of it when a recipient failed and RET did not say HDRS, else its
// headers (a report without failures returns only the headers, RFC 3461 4.3). The subject
// says the worst outcome in it. Lines end with CRLF.
std::string make_dsn(const Envelope& original, const std::vector<ReportedRecipient>& reported,
                     std::string_view original_message, const std::string& hostname,
                     const std::string& dsn_id, time_t now);

}  // namespace postern::queue
