// Which local address an outgoing connection leaves from (smtpd.yaml `source` of a route or a
// shaping rule, `relay_source`): the configured list that applies to a destination, and its
// address of a server's family. Pure functions over the configuration; Relay (relay.hpp) asks
// them when a destination's servers are known, the client stream binds the result.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mta/api.hpp"

namespace postern::mta {

// The source addresses of a destination: its route's (route, empty for none or a route without
// any), else its shaping rule's (rule may be nullptr), else relay_source. The first level that
// names any applies whole: a server of a family it has no address for is connected to unbound,
// never from a less specific level's address.
const std::vector<std::string>& applicable_sources(const std::vector<std::string>& route,
                                                   const Shaping* rule, const Settings& settings);

// The address of sources of server's family; empty when there is none (or server is no IP
// address).
std::string source_for(const std::vector<std::string>& sources, std::string_view server);

}  // namespace postern::mta
