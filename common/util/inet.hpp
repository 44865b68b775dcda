// Socket addresses as text, written one way for every process: smtp names its clients with
// it and lookup names the connections it vouches for, so the two can be compared.
#pragma once

#include <sys/socket.h>

#include <string>

namespace postern::inet {

// "192.0.2.1" or "2001:db8::1" (an IPv4 client on a dual-stack socket is an IPv4 client);
// "unknown" for any other family.
std::string address_text(const sockaddr_storage& address);

// The same with the port: "192.0.2.1:25", "[2001:db8::1]:25".
std::string endpoint_text(const sockaddr_storage& address);

}  // namespace postern::inet
