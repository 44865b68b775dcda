// Loop detection; see loops.hpp.
#include "mta/loops.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

#include "common/util/ascii.hpp"
#include "common/util/inet.hpp"

namespace postern::mta {
namespace {

bool loopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return (ntohl(reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr) >> 24) == 127;
  if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a).sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&in6) != 0;
  }
  return false;
}

bool unspecified(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return reinterpret_cast<const sockaddr_in&>(a).sin_addr.s_addr == htonl(INADDR_ANY);
  if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a).sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&in6) != 0;
  }
  return false;
}

uint16_t port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return 0;
}

}  // namespace

Result<uint32_t> count_received(const MessageData& message) {
  uint32_t count = 0;
  uint64_t offset = 0;
  std::string head;   // the current line's first 9 octets: enough to see its field name
  size_t length = 0;  // of the current line
  char buffer[16 * 1024];
  while (offset < std::min<uint64_t>(message.size, kMaxHeaderScan)) {
    const Result<size_t> n = read_message_at(message, offset, buffer, sizeof buffer);
    if (!n.ok()) return n.error();
    if (n.value() == 0) break;
    for (size_t i = 0; i < n.value(); ++i) {
      const char c = buffer[i];
      if (c == '\n') {
        if (length == 0 || head == "\r") return count;  // the end of the header section
        head.clear();
        length = 0;
        continue;
      }
      if (++length <= 9) {
        head.push_back(c);
        if (length == 9 && ascii::lower(head) == "received:") ++count;
      }
    }
    offset += n.value();
  }
  return count;
}

bool is_local(const std::vector<std::string>& local_addresses, const std::string& address,
              uint16_t port) {
  const std::optional<sockaddr_storage> target = inet::parse_ip_address(address);
  if (!target) return false;
  const std::string target_text = inet::address_text(*target);
  for (const std::string& text : local_addresses) {
    const auto listener = inet::parse_socket_address(text);
    if (!listener || port_of(listener->storage) != port) continue;
    if (unspecified(listener->storage)) {
      if (loopback(*target)) return true;
      continue;
    }
    if (inet::address_text(listener->storage) == target_text) return true;
  }
  return false;
}

bool drop_self(std::vector<msg::MxHost>& hosts, const std::string& hostname,
               const std::vector<std::string>& local_addresses) {
  const std::string us = ascii::lower(hostname);
  const auto self = std::find_if(hosts.begin(), hosts.end(), [&](const msg::MxHost& h) {
    if (ascii::lower(h.name) == us) return true;
    return std::any_of(h.addresses.begin(), h.addresses.end(),
                       [&](const std::string& a) { return is_local(local_addresses, a, 25); });
  });
  if (self == hosts.end()) return false;
  const uint16_t ours = self->preference;
  std::erase_if(hosts, [ours](const msg::MxHost& h) { return h.preference >= ours; });
  return true;
}

}  // namespace postern::mta
