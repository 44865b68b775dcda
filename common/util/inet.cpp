// Socket addresses as text; see inet.hpp.
#include "common/util/inet.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace postern::inet {

std::string address_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = "unknown";
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr))
      inet_ntop(AF_INET, &sin6.sin6_addr.s6_addr[12], buf, sizeof buf);
    else
      inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::string endpoint_text(const sockaddr_storage& ss) {
  const std::string address = address_text(ss);
  if (ss.ss_family == AF_INET)
    return address + ":" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in&>(ss).sin_port));
  if (ss.ss_family == AF_INET6)
    return (address.find(':') == std::string::npos ? address : "[" + address + "]") + ":" +
           std::to_string(ntohs(reinterpret_cast<const sockaddr_in6&>(ss).sin6_port));
  return address;
}

}  // namespace postern::inet
