// One destination; see destination.hpp.
#include "mda/destination.hpp"

#include <pwd.h>
#include <unistd.h>

#include <ctime>

#include "mda/api.hpp"
#include "mda/command.hpp"
#include "mda/maildir.hpp"
#include "mda/mbox.hpp"
#include "queue/api.hpp"
#include "smtpd/api.hpp"

namespace postern::mda {

std::string delivery_header(const std::string& sender, const std::string& mailbox) {
  return "Return-Path: <" + sender + ">\r\nDelivered-To: " + mailbox + "\r\n";
}

msg::HelperResult deliver_destination(const msg::HelperDeliver& job, int message_fd) {
  const MessageData message{message_fd, job.size};
  const msg::Destination& d = job.destination;
  const std::string header = delivery_header(job.sender, d.mailbox);
  auto temporary = [](std::string detail) {
    return msg::HelperResult{.outcome = msg::DeliveryOutcome::temporary_failure,
                             .dsn = "4.3.0",
                             .detail = std::move(detail)};
  };
  auto delivered = [](std::string detail) {
    return msg::HelperResult{
        .outcome = msg::DeliveryOutcome::delivered, .dsn = "2.0.0", .detail = std::move(detail)};
  };
  switch (d.method) {
    case msg::DeliveryMethod::maildir: {
      if (d.target.empty() || d.target[0] != '/') return temporary("mailbox path is not absolute");
      Result<std::string> path = deliver_to_maildir(d.target, header, message, job.unique);
      if (!path.ok()) return temporary(path.error().message);
      return delivered("delivered to maildir");
    }
    case msg::DeliveryMethod::mbox: {
      if (d.target.empty() || d.target[0] != '/') return temporary("mailbox path is not absolute");
      const Status st = deliver_to_mbox(d.target, job.sender, header, message, time(nullptr));
      if (!st.ok()) return temporary(st.error().message);
      return delivered("delivered to mbox");
    }
    case msg::DeliveryMethod::command: {
      passwd pw{};
      passwd* me = nullptr;
      char buffer[4096];
      const bool known = getpwuid_r(getuid(), &pw, buffer, sizeof buffer, &me) == 0 && me;
      const CommandResult r = deliver_to_command({.command = d.target,
                                                  .home = known ? pw.pw_dir : "/",
                                                  .user = known ? pw.pw_name : d.user,
                                                  .sender = job.sender,
                                                  .recipient = d.mailbox,
                                                  .header = header,
                                                  .message = message,
                                                  .timeout_seconds = job.timeout_seconds});
      const msg::DeliveryOutcome outcome = r.outcome == CommandOutcome::delivered
                                               ? msg::DeliveryOutcome::delivered
                                           : r.outcome == CommandOutcome::temporary_failure
                                               ? msg::DeliveryOutcome::temporary_failure
                                               : msg::DeliveryOutcome::permanent_failure;
      return msg::HelperResult{.outcome = outcome, .dsn = r.dsn, .detail = r.detail};
    }
    case msg::DeliveryMethod::lmtp:
    case msg::DeliveryMethod::forward:
      break;
  }
  return temporary("not a helper's delivery");
}

}  // namespace postern::mda
