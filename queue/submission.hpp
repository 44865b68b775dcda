// Local submission (sendmail(8)): the file sendmail writes into the offline area, read back
// strictly, and the message the queue makes of it: the trace header with the submitter's uid,
// the headers a local message lacks, CRLF line ends. Pure functions, no I/O; the bytes come
// from any local user and are checked here before anything else looks at them. Who the
// submitter is comes from the caller (the file's owner, as the kernel recorded it), never
// from the file.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/envelope.hpp"
#include "common/util/result.hpp"

namespace postern::queue {

// The file: a header of lines, then exactly size octets of message as sendmail read it.
//   postern-submission 1
//   from ADDRESS        optional (-f); "<>" for the null sender
//   name TEXT           optional (-F)
//   rcpt ADDRESS        one or more
//   size OCTETS
//   (an empty line)
//   the message
inline constexpr std::string_view kSubmissionMagic = "postern-submission 1\n";
// The header part is bounded apart from the message.
constexpr size_t kMaxSubmissionHeader = 1024 * 1024;
constexpr size_t kMaxSubmissionRecipients = 10000;
constexpr size_t kMaxSubmissionField = 1024;

struct Submission {
  std::optional<std::string> sender;  // as given with -f
  std::string full_name;              // -F
  std::vector<std::string> recipients;
  std::string_view message;  // a view into the bytes parsed
};

// Refuses anything that is not exactly one well-formed submission.
Result<Submission> parse_submission(std::string_view bytes);

// The header sendmail(8) writes before the message: the inverse of parse_submission (inline,
// for smtpctl links no queue code). Values must be printable, one line each.
inline std::string submission_header(const std::optional<std::string>& sender,
                                     std::string_view full_name,
                                     const std::vector<std::string>& recipients, size_t size) {
  std::string h(kSubmissionMagic);
  if (sender) h += "from " + (sender->empty() ? std::string("<>") : *sender) + "\n";
  if (!full_name.empty()) h += "name " + std::string(full_name) + "\n";
  for (const std::string& r : recipients) h += "rcpt " + r + "\n";
  h += "size " + std::to_string(size) + "\n\n";
  return h;
}

// The submitter as the queue was told by the parent.
struct LocalSubmitter {
  uint32_t uid = 0;
  std::string user;
  bool trusted = false;  // may name any sender with -f
};

struct LocalMessage {
  Envelope envelope;  // sender and recipients; the caller sets the id and arrival
  std::string data;   // the message as spooled: our headers on top, CRLF line ends
  // Set when an untrusted user named a sender: what the log says about it.
  std::string sender_warning;
};

// Makes the spooled message: a bare recipient name is a user at hostname; without -f the
// sender is user@hostname; an untrusted user's -f is kept (as Postfix and Sendmail do) but
// recorded in an X-Authentication-Warning: header and the log. On top go a Received: header
// naming the uid and user, and Message-ID:, Date: and From: when the message has none.
// Refused: a malformed address, no recipient, or a message over max_size once made.
Result<LocalMessage> make_local_message(const Submission& submission,
                                        const LocalSubmitter& submitter,
                                        const std::string& hostname, const std::string& queue_id,
                                        time_t when, uint64_t max_size);

}  // namespace postern::queue
