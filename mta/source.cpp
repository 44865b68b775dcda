// Source addresses of outgoing connections; see source.hpp.
#include "mta/source.hpp"

#include "common/util/inet.hpp"

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

}  // namespace postern::mta
