// Mail that would come back here: counted Received: headers (a loop between servers, as
// Postfix's hopcount_limit) and MX hosts or relays that are this server itself (RFC 5321 5.1: a
// backup MX drops the hosts it prefers no more than itself). Reads only the descriptor the
// queue handed over, and never resolves anything itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/util/io.hpp"
#include "common/util/result.hpp"
#include "mta/api.hpp"

namespace postern::mta {

// The header section is read at most this far: a Received: further down is not counted.
constexpr size_t kMaxHeaderScan = 1024 * 1024;

// Received: header fields of the message's header section (up to the first empty line).
Result<uint32_t> count_received(const MessageData& message);

// Is address:port one this server listens on (local_addresses, "192.0.2.1:25",
// "[2001:db8::1]:25")? A wildcard listener (0.0.0.0, ::) counts for loopback addresses
// only: which other addresses are ours the chrooted mta cannot tell.
bool is_local(const std::vector<std::string>& local_addresses, const std::string& address,
              uint16_t port);

// The MX hosts of an answer with this server and everything it prefers no more than itself
// dropped (a host is us by our hostname or by one of its addresses on port 25). True when
// the answer named us; hosts empty then means only we would take the mail (a loop).
bool drop_self(std::vector<msg::MxHost>& hosts, const std::string& hostname,
               const std::vector<std::string>& local_addresses);

}  // namespace postern::mta
