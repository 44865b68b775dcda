// The reader behind ConfigHooks (config_hooks.hpp): the dispatch from a hook name to the
// key's reader and the walk's helpers, shared by the files that read the keys:
// config_hooks.cpp (control socket, trusted networks, resolvers, relay domains, senders),
// config_listeners.cpp (listeners and their client checks), config_domains.cpp (domains, users,
// alias rights) and config_routes.cpp (relay routes, source addresses). Used by those files
// only.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/schema.hpp"
#include "smtpd/config.hpp"

namespace postern::smtpd::hooks {

using config::MapEntry;
using config::Mark;
using config::Node;
using config::Walk;

// The keys no table can describe, called by the walk through their hook names.
class KeyReader {
 public:
  explicit KeyReader(Walk& walk) : walk_(walk) {}

  bool operator()(std::string_view hook, Walk&, const MapEntry& entry, std::string& out) {
    if (hook == "metrics_address") return metrics_address(entry, out);
    if (hook != "socket") std::abort();  // a table names a hook this type has not
    return control_socket(entry, out);
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry, std::vector<Listener>& out) {
    if (hook != "listeners") std::abort();  // a table names a hook this type has not
    out.clear();                            // a list given replaces the default
    walk_listeners(entry, out);
    return true;
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry,
                  std::vector<lookup::Domain>& out) {
    if (hook != "domains") std::abort();  // a table names a hook this type has not
    out.clear();                          // a list given replaces the default
    walk_domains(entry, out);
    return true;
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry,
                  std::vector<inet::Network>& out) {
    if (hook != "networks") std::abort();  // a table names a hook this type has not
    out.clear();                           // a list given replaces the default
    walk_trusted_networks(entry, out);
    return true;
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry,
                  std::vector<mta::Route>& out) {
    if (hook != "routes") std::abort();  // a table names a hook this type has not
    out.clear();                         // a list given replaces the default
    walk_routes(entry, out);
    return true;
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry,
                  std::vector<std::string>& out) {
    out.clear();  // a list given replaces the default
    if (hook == "resolvers") {
      walk_resolvers(entry, out);
    } else if (hook == "relay_domains") {
      walk_relay_domains(entry, out);
    } else if (hook == "source") {
      walk_source(entry, out);
    } else {
      std::abort();  // a table names a hook this type has not
    }
    return true;
  }
  bool operator()(std::string_view hook, Walk&, const MapEntry& entry,
                  std::optional<std::string>& out) {
    if (hook != "senders") std::abort();  // a table names a hook this type has not
    return senders_table(entry, out);
  }

 private:
  std::vector<const MapEntry*> check_keys(const Node& mapping, std::string_view where,
                                          std::span<const std::string_view> allowed) {
    return walk_.check_keys(mapping, where, allowed);
  }
  std::optional<std::string> string_value(const MapEntry& entry) {
    return walk_.string_value(entry);
  }
  std::optional<bool> bool_value(const MapEntry& entry) { return walk_.bool_value(entry); }
  std::optional<uint64_t> number_value(const MapEntry& entry, fields::Unit unit, uint64_t max) {
    return walk_.number_value(entry, unit, max);
  }
  bool path_value(const MapEntry& entry, std::string& out) { return walk_.path_value(entry, out); }
  static std::string named(std::string_view what, const Node& item) {
    return Walk::named(what, item);
  }

  bool control_socket(const MapEntry& entry, std::string& out);
  bool metrics_address(const MapEntry& entry, std::string& out);
  void walk_domains(const MapEntry& entry, std::vector<lookup::Domain>& domains);
  bool walk_alias_rights(const MapEntry& entry, lookup::AliasRights& rights);
  bool walk_users(const MapEntry& entry, lookup::Domain& domain);
  // A listener with the positions the duplicate checks point at.
  struct PlacedListener {
    Listener listener;
    Mark address_mark;
    Mark name_mark;  // the address's when the name is the default
  };
  void walk_listeners(const MapEntry& entry, std::vector<Listener>& listeners);
  std::optional<PlacedListener> walk_listener(const Node& item);
  void walk_trusted_networks(const MapEntry& entry, std::vector<inet::Network>& networks);
  void walk_resolvers(const MapEntry& entry, std::vector<std::string>& resolvers);
  void walk_relay_domains(const MapEntry& entry, std::vector<std::string>& domains);
  bool senders_table(const MapEntry& entry, std::optional<std::string>& out);
  void walk_routes(const MapEntry& entry, std::vector<mta::Route>& routes);
  std::optional<mta::Route> walk_route(const Node& item);
  // False when something was wrong (reported).
  bool walk_source(const MapEntry& entry, std::vector<std::string>& sources);
  std::optional<lookup::CheckAction> action_value(const MapEntry& entry);
  std::optional<lookup::ClientChecks> walk_checks(const MapEntry& entry);
  bool walk_zones(const MapEntry& entry, std::vector<lookup::DnsblZone>& zones);
  bool walk_codes(const MapEntry& entry, std::vector<std::string>& codes);

  Walk& walk_;
};

}  // namespace postern::smtpd::hooks
