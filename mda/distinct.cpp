// Duplicate elimination; see distinct.hpp.
#include "mda/distinct.hpp"
#include "mda/api.hpp"

#include <map>
#include <string>
#include <tuple>

namespace postern::mda {
namespace {

using Key = std::tuple<msg::DeliveryMethod, std::string, std::string, std::string>;

Key key_of(const msg::Destination& d) {
  return {d.method, d.target, d.user,
          d.method == msg::DeliveryMethod::lmtp ? d.mailbox : std::string()};
}

}  // namespace

bool same_delivery(const msg::Destination& a, const msg::Destination& b) {
  return key_of(a) == key_of(b);
}

std::vector<DistinctDelivery> distinct_deliveries(
    const std::vector<std::optional<msg::LocalRoute>>& routes) {
  std::vector<DistinctDelivery> deliveries;
  std::map<Key, size_t> seen;  // -> its index in deliveries
  for (size_t i = 0; i < routes.size(); ++i) {
    if (!routes[i] || routes[i]->status != msg::RouteStatus::ok) continue;
    for (const msg::Destination& d : routes[i]->destinations) {
      auto [it, fresh] = seen.try_emplace(key_of(d), deliveries.size());
      if (fresh) {
        deliveries.push_back({.destination = d, .recipients = {i}});
        continue;
      }
      // An alias naming one destination twice is still one recipient of it.
      std::vector<size_t>& sharing = deliveries[it->second].recipients;
      if (sharing.back() != i) sharing.push_back(i);
    }
  }
  return deliveries;
}

}  // namespace postern::mda
