// Local submission, read and made into a message; see submission.hpp.
#include "queue/submission.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/mail/address.hpp"
#include "common/mail/date.hpp"
#include "common/mail/received.hpp"

namespace postern::queue {
namespace {

// A header value of ours: printable ASCII or UTF-8, no control characters.
bool printable_field(std::string_view v) {
  return !v.empty() && v.size() <= kMaxSubmissionField &&
         std::none_of(v.begin(), v.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u < 0x20 || u == 0x7f;
         });
}

// Text taken into a header we write: control characters become '_'.
std::string header_safe(std::string_view v) {
  std::string out;
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '_' : c;
  }
  return out;
}

// local@domain, or a bare user name taken as one at hostname; canonical text.
Result<std::string> local_address(std::string_view text, const std::string& hostname) {
  std::string full(text);
  if (full.find('@') == std::string::npos) full += "@" + hostname;
  Result<address::Mailbox> mailbox = address::parse_mailbox(full, true);
  if (!mailbox.ok())
    return make_error("bad address '" + header_safe(text) + "': " + mailbox.error().message);
  return address::to_string(mailbox.value());
}

// The header fields a message has (lower-cased names) and where its header ends: the offset of
// the line that is not a header field (the empty line, or the first body line when the
// message has no empty line after its header).
struct HeaderScan {
  bool message_id = false;
  bool date = false;
  bool from = false;
  size_t end = 0;
  bool blank_line = false;  // the header ends with an empty line
};

HeaderScan scan_header(std::string_view m) {
  HeaderScan scan;
  size_t pos = 0;
  bool any = false;
  while (pos < m.size()) {
    const size_t eol = m.find('\n', pos);
    std::string_view line =
        m.substr(pos, eol == std::string_view::npos ? m.size() - pos : eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      scan.blank_line = true;
      break;
    }
    const bool continuation = line.front() == ' ' || line.front() == '\t';
    const size_t colon = line.find(':');
    const bool field = colon != std::string_view::npos && colon > 0 &&
                       std::all_of(line.begin(), line.begin() + static_cast<long>(colon),
                                   [](char c) { return c > 0x20 && c < 0x7f; });
    if (!(field || (continuation && any))) break;
    if (field) {
      any = true;
      std::string name(line.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      scan.message_id |= name == "message-id";
      scan.date |= name == "date";
      scan.from |= name == "from";
    }
    if (eol == std::string_view::npos) {
      pos = m.size();
      break;
    }
    pos = eol + 1;
  }
  scan.end = pos;
  return scan;
}

// Bare LF becomes CRLF; the last line gets its line end.
void append_crlf(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
    out += text[i];
  }
  if (!text.empty() && text.back() != '\n') out += "\r\n";
}

std::string message_id(const std::string& queue_id, const std::string& hostname, time_t when) {
  tm t{};
  gmtime_r(&when, &t);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &t);
  return "<" + std::string(stamp) + "." + queue_id + "@" + hostname + ">";
}

// "Full Name" <addr>, quoted (RFC 5322 3.2.4) so that any text stays one display name.
std::string from_field(std::string_view full_name, const std::string& address) {
  if (full_name.empty()) return address;
  std::string quoted = "\"";
  for (char c : header_safe(full_name)) {
    if (c == '"' || c == '\\') quoted += '\\';
    quoted += c;
  }
  return quoted + "\" <" + address + ">";
}

}  // namespace

Result<Submission> parse_submission(std::string_view bytes) {
  if (!bytes.starts_with(kSubmissionMagic)) return make_error("not a submission file");
  size_t pos = kSubmissionMagic.size();
  Submission s;
  std::optional<size_t> size;
  int last_stage = 0;
  for (;;) {
    if (pos >= kMaxSubmissionHeader) return make_error("header too long");
    const size_t eol = bytes.find('\n', pos);
    if (eol == std::string_view::npos) return make_error("header not ended");
    const std::string_view line = bytes.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) break;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos) return make_error("malformed header line");
    const std::string_view key = line.substr(0, space);
    const std::string_view value = line.substr(space + 1);
    if (!printable_field(value)) return make_error("bad value for " + header_safe(key));
    // One spelling: the lines in the order submission_header writes them.
    const int stage = key == "from"   ? 1
                      : key == "name" ? 2
                      : key == "rcpt" ? 3
                      : key == "size" ? 4
                                      : 0;
    if (stage == 0 || stage < last_stage || (stage == last_stage && stage != 3))
      return make_error("unknown or misplaced header line '" + header_safe(key) + "'");
    last_stage = stage;
    if (key == "from") {
      s.sender = value == "<>" ? std::string() : std::string(value);
    } else if (key == "name") {
      s.full_name = value;
    } else if (key == "rcpt") {
      if (s.recipients.size() >= kMaxSubmissionRecipients) return make_error("too many recipients");
      s.recipients.emplace_back(value);
    } else {
      size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() ||
          (value.size() > 1 && value.front() == '0'))
        return make_error("malformed size");
      size = n;
    }
  }
  if (!size) return make_error("no size");
  if (s.recipients.empty()) return make_error("no recipient");
  if (bytes.size() - pos != *size)
    return make_error("message of " + std::to_string(bytes.size() - pos) + " octets, " +
                      std::to_string(*size) + " announced");
  s.message = bytes.substr(pos);
  return s;
}

Result<LocalMessage> make_local_message(const Submission& submission,
                                        const LocalSubmitter& submitter,
                                        const std::string& hostname, const std::string& queue_id,
                                        time_t when, uint64_t max_size) {
  LocalMessage out;
  Envelope& e = out.envelope;
  Result<std::string> own = local_address(submitter.user, hostname);
  if (!own.ok()) return own.error();
  if (!submission.sender) {
    e.sender = own.value();
  } else if (!submission.sender->empty()) {
    Result<std::string> claimed = local_address(*submission.sender, hostname);
    if (!claimed.ok()) return claimed.error();
    e.sender = claimed.value();
  }
  for (const std::string& r : submission.recipients) {
    Result<std::string> rcpt = local_address(r, hostname);
    if (!rcpt.ok()) return rcpt.error();
    e.recipients.push_back(Recipient{.address = rcpt.value()});
  }
  e.listener = "local";
  e.smtputf8 = std::any_of(e.recipients.begin(), e.recipients.end(),
                           [](const Recipient& r) {
                             return std::any_of(r.address.begin(), r.address.end(),
                                                [](char c) { return c & 0x80; });
                           }) ||
               std::any_of(e.sender.begin(), e.sender.end(), [](char c) { return c & 0x80; });

  std::string& d = out.data;
  d = mail::local_received_header(hostname, submitter.uid, submitter.user, queue_id, when);
  if (submission.sender && !submitter.trusted && e.sender != own.value()) {
    out.sender_warning = "uid " + std::to_string(submitter.uid) + " (" +
                         header_safe(submitter.user) + ") set sender to <" + e.sender +
                         "> using -f";
    d += "X-Authentication-Warning: " + hostname + ": " + header_safe(submitter.user) +
         " set sender to " + (e.sender.empty() ? "<>" : e.sender) + " using -f\r\n";
  }
  const HeaderScan scan = scan_header(submission.message);
  if (!scan.message_id) d += "Message-ID: " + message_id(queue_id, hostname, when) + "\r\n";
  if (!scan.date) d += "Date: " + rfc5322_date(when) + "\r\n";
  if (!scan.from)
    d += "From: " + from_field(submission.full_name, e.sender.empty() ? own.value() : e.sender) +
         "\r\n";
  append_crlf(d, submission.message.substr(0, scan.end));
  // A body without the empty line that separates it from the header gets one.
  if (!scan.blank_line) d += "\r\n";
  append_crlf(d, submission.message.substr(scan.end));
  if (d.size() > max_size)
    return make_error("message of " + std::to_string(d.size()) + " octets, more than the " +
                      std::to_string(max_size) + " allowed");
  return out;
}

}  // namespace postern::queue
