// LMTP delivery (RFC 2033), e.g. into Dovecot: one transaction per message and domain, one
// answer per recipient. The client side of the protocol only; what the server answers is
// untrusted input, parsed line by line with bounds.
#pragma once

#include <string>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/util/io.hpp"
#include "mda/api.hpp"
#include "queue/api.hpp"

namespace postern::mda {

// target: "unix:/path/to/socket", "host:port" with an IP literal, or "[v6]:port".
std::vector<msg::DeliveryResult> deliver_lmtp(const std::string& target,
                                              const std::string& hostname,
                                              const std::string& sender,
                                              const std::vector<msg::LocalRecipient>& recipients,
                                              const MessageData& message);

// One server reply (possibly multi-line) parsed: code, and the text of its last line.
struct LmtpReply {
  int code = 0;
  std::string text;
};

// Dot-stuffs a message for the DATA phase (RFC 5321 4.5.2) and ends it with CRLF "." CRLF.
std::string dot_stuff(std::string_view message);

}  // namespace postern::mda
