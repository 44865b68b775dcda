// The Received: header; see received.hpp.
#include "common/mail/received.hpp"

#include "common/mail/date.hpp"

namespace postern::mail {
namespace {

// Client-supplied text inside a comment: printable ASCII only, no parentheses or backslash
// (they would end or escape the comment), bounded.
std::string clean(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= 255) break;
    out += (c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\') ? static_cast<char>(c) : '_';
  }
  return out.empty() ? "unknown" : out;
}

// "TLSv1.3 TLS_AES_256_GCM_SHA384": the same rules, with the one space kept.
std::string clean_tls(const std::string& tls) {
  const size_t space = tls.find(' ');
  if (space == std::string::npos) return clean(tls);
  return clean(tls.substr(0, space)) + " " + clean(tls.substr(space + 1));
}

}  // namespace

std::string received_header(const ReceivedInfo& info) {
  std::string with = info.esmtp ? "ESMTP" : "SMTP";
  if (info.esmtp && !info.tls.empty()) with += "S";
  if (info.esmtp && !info.auth_user.empty()) with += "A";
  std::string h = "Received: from " + clean(info.helo) + " (" +
                  (info.client_name.empty() ? "unknown" : clean(info.client_name)) + " [" +
                  clean(info.client_address) + "])\r\n";
  if (!info.tls.empty()) h += "\t(using " + clean_tls(info.tls) + ")\r\n";
  if (!info.auth_user.empty()) h += "\t(authenticated as " + clean(info.auth_user) + ")\r\n";
  h += "\tby " + info.hostname + " (Postern) with " + with + " id " + info.queue_id;
  if (!info.recipient.empty()) h += "\r\n\tfor <" + clean(info.recipient) + ">";
  h += ";\r\n\t" + rfc5322_date(info.when) + "\r\n";
  return h;
}

std::string local_received_header(const std::string& hostname, uint32_t uid,
                                  const std::string& user, const std::string& queue_id,
                                  time_t when) {
  return "Received: by " + hostname + " (Postern, from userid " + std::to_string(uid) + " " +
         clean(user) + ")\r\n\tid " + queue_id + ";\r\n\t" + rfc5322_date(when) + "\r\n";
}

}  // namespace postern::mail
