// Source addresses of outgoing connections; see source.hpp.
#include "mta/source.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

namespace postern::mta {

const std::vector<std::string>& applicable_sources(const std::vector<std::string>& route,
                                                   const Shaping* rule, const Settings& settings) {
  if (!route.empty()) return route;
  if (rule != nullptr && !rule->source.empty()) return rule->source;
  return settings.relay_source;
}

std::string source_for(const std::vector<std::string>& sources, std::string_view server) {
  const auto target = inet::parse_ip_address(server);
  if (!target) return {};
  for (const std::string& source : sources) {
    const auto address = inet::parse_ip_address(source);
    if (address && address->ss_family == target->ss_family) return source;
  }
  return {};
}

std::optional<inet::SocketAddress> source_address(std::string_view text) {
  const auto address = inet::parse_ip_address(text);
  if (!address) return std::nullopt;
  inet::SocketAddress out;
  out.storage = *address;
  out.length = address->ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  return out;
}

}  // namespace postern::mta
