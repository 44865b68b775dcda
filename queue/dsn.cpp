// Delivery status notifications; see dsn.hpp.
#include "queue/dsn.hpp"

#include <algorithm>

#include "common/mail/date.hpp"
#include "common/util/ascii.hpp"

namespace postern::queue {
namespace {

// Header and DSN field values come from clients: nothing may start a new line.
std::string one_line(std::string_view text) {
  return ascii::printable(text, ' ');
}

// The original message's header block (up to and including the empty line).
std::string_view header_part(std::string_view message) {
  const size_t end = message.find("\r\n\r\n");
  return end == std::string_view::npos ? message : message.substr(0, end + 4);
}

const char* action_word(DsnAction action) {
  switch (action) {
    case DsnAction::failed:
      return "failed";
    case DsnAction::delayed:
      return "delayed";
    case DsnAction::delivered:
      return "delivered";
    case DsnAction::expanded:
      return "expanded";
    case DsnAction::relayed:
      return "relayed";
  }
  return "failed";
}

}  // namespace

bool wants_report(const Recipient& recipient, DsnAction action) {
  const DsnNotify& n = recipient.notify;
  if (n.never) return false;
  if (action == DsnAction::delayed) return n.delay;
  if (action != DsnAction::failed) return n.success;
  const bool given = n.success || n.failure || n.delay;
  return !given || n.failure;
}

DsnNotify notify_for_members(const DsnNotify& alias) {
  if (!alias.success) return alias;
  DsnNotify members = alias;
  members.success = false;
  if (!members.failure && !members.delay) members.never = true;
  return members;
}

DsnAction headline(const std::vector<ReportedRecipient>& reported) {
  auto any = [&](DsnAction action) {
    return std::any_of(reported.begin(), reported.end(),
                       [action](const auto& r) { return r.action == action; });
  };
  return any(DsnAction::failed)    ? DsnAction::failed
         : any(DsnAction::delayed) ? DsnAction::delayed
                                   : DsnAction::delivered;
}

std::string make_dsn(const Envelope& original, const std::vector<ReportedRecipient>& reported,
                     std::string_view original_message, const std::string& hostname,
                     const std::string& dsn_id, time_t now) {
  const DsnAction worst = headline(reported);
  const bool any_failed = worst == DsnAction::failed;
  const std::string boundary = dsn_id + "/" + hostname;
  std::string m;
  m += "From: Mail Delivery System <MAILER-DAEMON@" + hostname + ">\r\n";
  m += "To: <" + one_line(original.sender) + ">\r\n";
  m += any_failed                    ? "Subject: Undelivered Mail Returned to Sender\r\n"
       : worst == DsnAction::delayed ? "Subject: Delayed Mail (still being retried)\r\n"
                                     : "Subject: Successful Mail Delivery Report\r\n";
  m += "Date: " + rfc5322_date(now) + "\r\n";
  m += "Message-ID: <" + dsn_id + "@" + hostname + ">\r\n";
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status;\r\n";
  m += "\tboundary=\"" + boundary + "\"\r\n";
  m += "\r\n";
  m += "This is a MIME-encapsulated message.\r\n\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Notification\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += "This is the mail system at host " + hostname + ".\r\n";
  for (auto [action, intro] :
       {std::pair{DsnAction::failed,
                  "Your message could not be delivered to the following recipients:"},
        {DsnAction::delayed,
         "Your message could not be delivered yet to the following recipients; delivery is "
         "still being tried:"},
        {DsnAction::delivered, "Your message was delivered to the following recipients:"},
        {DsnAction::expanded,
         "Your message was delivered to the following aliases, which sent it on to their "
         "members:"},
        {DsnAction::relayed,
         "Your message was sent on for the following recipients to a server that does not "
         "report deliveries; no further notification will come:"}}) {
    std::string lines;
    for (const ReportedRecipient& r : reported)
      if (r.action == action)
        lines += "<" + one_line(r.recipient->address) + ">: " + one_line(r.diagnostic) + "\r\n";
    if (!lines.empty()) m += std::string("\r\n") + intro + "\r\n\r\n" + lines;
  }
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  m += "Content-Description: Delivery report\r\n";
  m += "Content-Type: message/delivery-status\r\n\r\n";
  m += "Reporting-MTA: dns; " + hostname + "\r\n";
  if (!original.envid.empty()) m += "Original-Envelope-Id: " + one_line(original.envid) + "\r\n";
  m += "Arrival-Date: " + rfc5322_date(original.arrival) + "\r\n";
  for (const ReportedRecipient& r : reported) {
    m += "\r\n";
    m += "Final-Recipient: rfc822; " + one_line(r.recipient->address) + "\r\n";
    if (!r.recipient->orcpt.empty())
      m += "Original-Recipient: " + one_line(r.recipient->orcpt_type) + "; " +
           one_line(r.recipient->orcpt) + "\r\n";
    m += std::string("Action: ") + action_word(r.action) + "\r\n";
    m += "Status: " + one_line(r.status) + "\r\n";
    // RFC 3464 2.3.5-2.3.6: a remote server's reply is quoted as such, with its name.
    if (!r.remote_mta.empty()) m += "Remote-MTA: dns; " + one_line(r.remote_mta) + "\r\n";
    // An extension field (RFC 3464 2.4): the trace of how the remote server was reached.
    if (!r.remote_mta.empty() && !r.tls.empty()) m += "X-Postern-TLS: " + one_line(r.tls) + "\r\n";
    m += std::string("Diagnostic-Code: ") + (r.remote_mta.empty() ? "X-Postern" : "smtp") + "; " +
         one_line(r.diagnostic) + "\r\n";
    if (r.action == DsnAction::delayed && r.retry_until != 0)
      m += "Will-Retry-Until: " + rfc5322_date(r.retry_until) + "\r\n";
  }
  m += "\r\n";

  m += "--" + boundary + "\r\n";
  if (!any_failed || original.ret == DsnRet::headers) {
    m += std::string("Content-Description: ") +
         (any_failed ? "Undelivered Message Headers" : "Message Headers") + "\r\n";
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
