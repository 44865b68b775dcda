// The Received: trace header smtp puts on top of every message (RFC 5321 4.4, RFC 3848 for
// the "with" protocol names). Every value that came from the client is cleaned of anything
// that could break the header (control characters, parentheses in comments).
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

namespace postern::mail {

struct ReceivedInfo {
  std::string helo;            // as the client said it
  std::string client_name;     // verified rDNS name, empty when none
  std::string client_address;  // "192.0.2.1" or "2001:db8::1"
  std::string hostname;        // ours
  bool esmtp = true;           // EHLO (ESMTP) or HELO (SMTP)
  std::string tls;             // "TLSv1.3 TLS_AES_256_GCM_SHA384", empty without TLS
  std::string auth_user;       // empty when not authenticated
  std::string queue_id;
  std::string recipient;  // named in "for" only when the message has one recipient
  time_t when = 0;
};

// "Received: ...\r\n" with folded continuation lines.
std::string received_header(const ReceivedInfo& info);

// The trace header of a local submission (sendmail(8)), as Postfix writes one: no client,
// the submitter's uid and login name, "Received: by HOST (Postern, from userid UID USER)".
std::string local_received_header(const std::string& hostname, uint32_t uid,
                                  const std::string& user, const std::string& queue_id,
                                  time_t when);

}  // namespace postern::mail
