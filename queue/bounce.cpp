// Delivery status notifications; see bounce.hpp.
#include "queue/bounce.hpp"

#include "common/date.hpp"

namespace postern::queue {
namespace {

// Header and DSN field values come from clients: nothing may start a new line.
std::string one_line(std::string_view text) {
  std::string out;
  for (unsigned char c : text) out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
  return out;
}

// The original message's header block (up to and including the empty line).
std::string_view header_part(std::string_view message) {
  const size_t end = message.find("\r\n\r\n");
  return end == std::string_view::npos ? message : message.substr(0, end + 4);
}

}  // namespace

bool wants_failure_report(const Recipient& recipient) {
  const DsnNotify& n = recipient.notify;
  if (n.never) return false;
  const bool given = n.success || n.failure || n.delay;
  return !given || n.failure;
}

std::string make_bounce(const Envelope& original, const std::vector<FailedRecipient>& failed,
                        std::string_view original_message, const std::string& hostname,
                        const std::string& bounce_id, time_t now) {
  const std::string boundary = bounce_id + "/" + hostname;
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + hostname + ">\r\n";
  m += "To: <" + one_line(original.sender) + ">\r\n";
  m += "Subject: Undelivered Mail Returned to Sender\r\n";
  m += "Date: " + rfc5322_date(now) + "\r\n";
  m += "Message-ID: <" + bounce_id + "@" + hostname + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n";
  m += "\tboundary=\"" + boundary + "\"\r\n";
  m += "\r\n";
  m += "This is a MIME-encapsulated message.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at host " + hostname + ".\r\n\r\n";
  m += "Your message could not be delivered to the following recipients:\r\n\r\n";
  for (const FailedRecipient& f : failed)
    m += "<" + one_line(f.recipient->address) + ">: " + one_line(f.diagnostic) + "\r\n";
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\n";
  m += "Content-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + hostname + "\r\n";
  if (!original.envid.empty()) m += "Original-Envelope-Id: " + one_line(original.envid) + "\r\n";
  m += "Arrival-Date: " + rfc5322_date(original.arrival) + "\r\n";
  for (const FailedRecipient& f : failed) {
    m += "\r\n";
    m += "Final-Recipient: rfc822; " + one_line(f.recipient->address) + "\r\n";
    if (!f.recipient->orcpt.empty())
      m += "Original-Recipient: " + one_line(f.recipient->orcpt_type) + "; " +
           one_line(f.recipient->orcpt) + "\r\n";
    m += "Action: failed\r\n";
    m += "Status: " + one_line(f.status) + "\r\n";
    m += "Diagnostic-Code: X-Postern; " + one_line(f.diagnostic) + "\r\n";
  }
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  if (original.ret == DsnRet::headers) {
    m += "Content-Description: Undelivered Message Headers\r\n";
    m += "Content-Type: text/rfc822-headers\r\n\r\n";
    m += header_part(original_message);
  } else {
    m += "Content-Description: Undelivered Message\r\n";
    m += "Content-Type: message/rfc822\r\n\r\n";
    m += original_message;
    if (!original_message.empty() && !original_message.ends_with("\r\n")) m += "\r\n";
  }
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace postern::queue
