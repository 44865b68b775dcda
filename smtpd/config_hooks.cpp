// The keys of smtpd.yaml no field table can describe, read for the schema walk through their
// hook names (see config_hooks.hpp): listeners with their client checks, domains, trusted
// networks, resolvers and the control socket. Input is untrusted text (fuzzed).
#include "smtpd/config_hooks.hpp"

#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <span>
#include <string>
#include <utility>

#include "common/util/ascii.hpp"

namespace postern::smtpd {
namespace {

using config::join;
using config::MapEntry;
using config::Mark;
using config::Node;
using config::quote;
using config::valid_hostname;
using config::Walk;

constexpr auto kDomainKeys = config::file_keys<lookup::Domain>();
constexpr auto kListenerKeys = config::file_keys<Listener>();
constexpr auto kChecksKeys = config::file_keys<lookup::ClientChecks>();
constexpr auto kZoneKeys = config::file_keys<lookup::DnsblZone>();

// A mailbox path template: %u (the local part) and %d (the domain) stand for whole path
// segments, so no recipient can climb out of it; it needs %u unless it starts in the home
// directory of a system user ("~/").
bool valid_mailbox_template(std::string_view path, bool system_users) {
  const bool home = system_users && path.starts_with("~/");
  bool has_user = false;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') continue;
    if (i + 1 >= path.size() || (path[i + 1] != 'u' && path[i + 1] != 'd')) return false;
    if (i == 0 || path[i - 1] != '/' || (i + 2 < path.size() && path[i + 2] != '/')) return false;
    has_user = has_user || path[i + 1] == 'u';
    ++i;
  }
  return has_user || home;
}

bool valid_listener_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxListenerName) return false;
  for (const char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

enum class ResolverProblem : uint8_t { syntax, port_range };

// "IP" or "IP@port", written back canonically ("::1@53", "192.0.2.1").
Result<std::string, ResolverProblem> read_resolver(std::string_view text) {
  std::string_view host = text;
  std::optional<std::string_view> port;
  if (const size_t at = text.rfind('@'); at != std::string_view::npos) {
    host = text.substr(0, at);
    port = text.substr(at + 1);
  }
  const std::optional<sockaddr_storage> address = inet::parse_ip_address(host);
  if (!address) return ResolverProblem::syntax;
  std::string out = inet::address_text(*address, inet::Mapped::as_ipv6);
  if (!port) return out;
  if (port->empty()) return ResolverProblem::syntax;
  uint32_t number = 0;
  for (const char c : *port) {
    if (c < '0' || c > '9') return ResolverProblem::syntax;
    number = std::min<uint32_t>(number * 10 + static_cast<uint32_t>(c - '0'), 1000000);
  }
  if (number < 1 || number > 65535) return ResolverProblem::port_range;
  return out + "@" + std::to_string(number);
}

// A DNSBL zone, already lower-cased and without its trailing dot. It is a DNS name, not a host
// name (RFC 2181 11), so underscores are allowed: some real zones have them.
bool valid_zone_name(std::string_view name) {
  if (name.empty() || name.size() > lookup::kMaxZoneName) return false;
  size_t label = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!allowed || ++label > 63) return false;
  }
  return label > 0;
}

// The keys no table can describe, called by the walk through their hook names.

class KeyReader {
 public:
  explicit KeyReader(Walk& walk) : walk_(walk) {}

  bool operator()(std::string_view hook, Walk&, const MapEntry& entry, std::string& out) {
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
                  std::vector<std::string>& out) {
    if (hook != "resolvers") std::abort();  // a table names a hook this type has not
    out.clear();                            // a list given replaces the default
    walk_resolvers(entry, out);
    return true;
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

  bool control_socket(const MapEntry& entry, std::string& out) {
    std::string path;
    if (!path_value(entry, path)) return false;
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
      walk_.at(entry.value.mark, "control socket path is too long (" + std::to_string(path.size()) +
                                     " bytes once resolved; at most " +
                                     std::to_string(sizeof(sockaddr_un::sun_path) - 1) + ")");
      return false;
    }
    out = std::move(path);
    return true;
  }

  // "example.org" or {name: example.org, users: [alice, bob]}.
  void walk_domains(const MapEntry& entry, std::vector<lookup::Domain>& domains) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'domains' must be a list");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      const Node* name_node = &item;
      lookup::Domain d;
      if (item.kind == Node::Kind::mapping) {
        const auto fields = check_keys(item, "domain", kDomainKeys);
        if (fields[0] == nullptr) {
          walk_.at(item.mark, "domain has no 'name'");
          continue;
        }
        name_node = &fields[0]->value;
        if (fields[1] != nullptr && !walk_users(*fields[1], d)) continue;
        bool ok = true;
        if (const MapEntry* e = fields[2]) {
          std::string path;
          if (path_value(*e, path)) {
            d.aliases = std::move(path);
          } else {
            ok = false;
          }
        }
        if (const MapEntry* e = fields[3]) {
          auto target = string_value(*e);
          if (target && !target->empty() && target->size() <= 254 &&
              target->find_first_of(" \t\r\n,:\"|/") == std::string::npos) {
            d.catch_all = std::move(*target);
          } else {
            if (target)
              walk_.at(e->value.mark, "bad 'catch_all' " + quote(*target) +
                                          " (expected a local part or an address)");
            ok = false;
          }
        }
        for (size_t k = 4; k <= 5; ++k) {
          if (fields[k] == nullptr) continue;
          std::string path;
          auto text = string_value(*fields[k]);
          // "~/" (system users only) is the recipient's home, resolved at delivery.
          if (text && d.system_users && text->starts_with("~/")) {
            path = *text;
          } else if (!path_value(*fields[k], path)) {
            ok = false;
            continue;
          }
          if (!valid_mailbox_template(path, d.system_users)) {
            walk_.at(
                fields[k]->value.mark,
                quote(fields[k]->key.text) +
                    (d.system_users ? " must start with ~/ or hold %u as a whole path segment, "
                                      "such as ~/Maildir or /var/mail/%u"
                                    : " needs %u standing for a whole path segment, such as "
                                      "/var/mail/%u"));
            ok = false;
            continue;
          }
          (k == 4 ? d.maildir : d.mbox) = std::move(path);
        }
        if (const MapEntry* e = fields[6]) {
          if (auto target = string_value(*e)) {
            if (target->starts_with("unix:/") ||
                (!target->starts_with("unix:") && inet::read_socket_address(*target))) {
              d.lmtp = std::move(*target);
            } else {
              walk_.at(e->value.mark,
                       "bad 'lmtp' target " + quote(*target) + " (expected unix:/path or IP:port)");
              ok = false;
            }
          } else {
            ok = false;
          }
        }
        if (const MapEntry* e = fields[7]) {
          auto command = string_value(*e);
          if (command && !command->empty() &&
              std::none_of(command->begin(), command->end(),
                           [](unsigned char c) { return ascii::is_control(c); })) {
            d.command = std::move(*command);
          } else {
            if (command)
              walk_.at(e->value.mark,
                       "'command' must be a non-empty command line without control "
                       "characters");
            ok = false;
          }
        }
        if (fields[8] != nullptr && !walk_alias_rights(*fields[8], d.alias_commands)) ok = false;
        if (fields[9] != nullptr && !walk_alias_rights(*fields[9], d.alias_files)) ok = false;
        if (const MapEntry* e = fields[10]) {
          if (!d.system_users) {
            walk_.at(e->key.mark, "'min_uid' applies to domains with 'users: system'");
            ok = false;
          } else if (auto n = number_value(*e, "", 0xfffffffe)) {
            d.min_uid = static_cast<uint32_t>(*n);
          } else {
            ok = false;
          }
        }
        if ((d.maildir ? 1 : 0) + (d.mbox ? 1 : 0) + (d.lmtp ? 1 : 0) + (d.command ? 1 : 0) > 1) {
          walk_.at(item.mark, "a domain is delivered one way: maildir, mbox, lmtp or command");
          ok = false;
        }
        if (!ok) continue;
      }
      if (name_node->kind != Node::Kind::scalar) {
        walk_.at(name_node->mark, "each domain must be a name or a mapping with name and users");
        continue;
      }
      const Node& name = *name_node;
      std::string domain = name.text;
      std::transform(domain.begin(), domain.end(), domain.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!domain.empty() && domain.back() == '.') domain.pop_back();
      if (!valid_hostname(domain)) {
        walk_.at(name.mark,
                 "invalid domain " + quote(name.text) + " (expected letters, digits, '-' and '.')");
        continue;
      }
      const auto [first, fresh] = lines.emplace(domain, name.mark.line);
      if (!fresh) {
        walk_.at(name.mark, "duplicate domain " + quote(domain) + " (first at line " +
                                std::to_string(first->second) + ")");
        continue;
      }
      d.name = std::move(domain);
      domains.push_back(std::move(d));
    }
  }

  // Where aliases may name commands or files: a list of "aliases" and "include", [] for
  // nowhere.
  bool walk_alias_rights(const MapEntry& entry, lookup::AliasRights& rights) {
    const Node& value = entry.value;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark,
               quote(entry.key.text) + " must be a list such as [aliases] or [aliases, include]");
      return false;
    }
    rights = lookup::AliasRights{.aliases = false, .include = false};
    bool ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::scalar && item.text == lookup::kAliasSourceNames[0]) {
        rights.aliases = true;
      } else if (item.kind == Node::Kind::scalar && item.text == lookup::kAliasSourceNames[1]) {
        rights.include = true;
      } else {
        walk_.at(item.mark, "expected one of " + join(lookup::kAliasSourceNames) +
                                (item.kind == Node::Kind::scalar ? ", not " + quote(item.text)
                                                                 : std::string()));
        ok = false;
      }
    }
    return ok;
  }

  // A list of local parts, "system" or the path of a virtual users table.
  bool walk_users(const MapEntry& entry, lookup::Domain& domain) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::scalar) {
      if (value.text == "system") {
        domain.system_users = true;
        return true;
      }
      std::string path;
      if (!path_value(entry, path)) return false;
      domain.users_table = std::move(path);
      return true;
    }
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'users' must be a list of local parts, 'system' or a table file");
      return false;
    }
    std::vector<std::string> users;
    bool ok = true;
    for (const Node& u : value.items) {
      if (u.kind != Node::Kind::scalar || u.text.empty() || u.text.size() > 64 ||
          u.text.find_first_of("@%! \t\"") != std::string::npos) {
        walk_.at(u.mark, "invalid user (expected a local part such as 'alice')");
        ok = false;
        continue;
      }
      std::string name = u.text;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      users.push_back(std::move(name));
    }
    if (ok) domain.users = std::move(users);
    return ok;
  }

  // A listener with the positions the duplicate checks point at.
  struct PlacedListener {
    Listener listener;
    Mark address_mark;
    Mark name_mark;  // the address's when the name is the default
  };

  void walk_listeners(const MapEntry& entry, std::vector<Listener>& listeners) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'listeners' must be a list");
      return;
    }
    if (value.items.empty()) {
      walk_.at(value.mark, "no listeners configured (the 'listeners' list is empty)");
      return;
    }
    std::map<std::string, int> address_lines;
    std::map<std::string, int, std::less<>> name_lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      if (item.kind != Node::Kind::mapping) {
        walk_.at(item.mark, "listener entry must be a mapping (with address, role, name)");
        continue;
      }
      std::optional<PlacedListener> placed = walk_listener(item);
      if (!placed) continue;
      const Listener& listener = placed->listener;
      const auto [first_address, fresh_address] =
          address_lines.emplace(inet::address_key(listener.address), placed->address_mark.line);
      if (!fresh_address) {
        walk_.at(placed->address_mark, "duplicate listener " + listener.address.to_string() +
                                           " (first defined at line " +
                                           std::to_string(first_address->second) + ")");
        continue;  // its default name would repeat the same complaint
      }
      const auto [first_name, fresh_name] =
          name_lines.emplace(listener.name, placed->name_mark.line);
      if (!fresh_name) {
        walk_.at(placed->name_mark, "duplicate listener name " + quote(listener.name) +
                                        " (first defined at line " +
                                        std::to_string(first_name->second) + ")");
        continue;
      }
      listeners.push_back(std::move(placed->listener));
    }
  }

  std::optional<PlacedListener> walk_listener(const Node& item) {
    const auto fields = check_keys(item, "listener", kListenerKeys);
    PlacedListener placed;
    Listener& listener = placed.listener;
    bool ok = true;
    const MapEntry* address_entry = fields[0];
    if (address_entry == nullptr) {
      walk_.at(item.mark, "listener has no 'address'");
      ok = false;
    } else if (auto text = string_value(*address_entry)) {
      auto address = inet::read_socket_address(*text);
      if (address) {
        listener.address = address.value();
      } else if (address.error() == inet::AddressProblem::port_range) {
        walk_.at(address_entry->value.mark,
                 "bad listener address " + quote(*text) + ": port must be 1-65535");
        ok = false;
      } else {
        walk_.at(address_entry->value.mark,
                 "bad listener address " + quote(*text) + " (expected IP:port or [IPv6]:port)");
        ok = false;
      }
    } else {
      ok = false;
    }
    if (const MapEntry* e = fields[1]) {
      if (auto role = string_value(*e)) {
        size_t index = 0;
        while (index < config::kListenerRoleNames.size() &&
               config::kListenerRoleNames[index] != *role)
          ++index;
        if (index < config::kListenerRoleNames.size()) {
          listener.role = static_cast<ListenerRole>(index);
        } else {
          walk_.at(e->value.mark, "unknown listener role " + quote(*role) + " (expected one of: " +
                                      join(config::kListenerRoleNames) + ")");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    const MapEntry* name_entry = fields[2];
    if (name_entry != nullptr) {
      if (auto name = string_value(*name_entry)) {
        if (valid_listener_name(*name)) {
          listener.name = std::move(*name);
        } else {
          walk_.at(name_entry->value.mark, "invalid listener name " + quote(*name) +
                                               " (expected 1-" + std::to_string(kMaxListenerName) +
                                               " printable characters without spaces)");
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (const MapEntry* e = fields[3]) {
      if (auto flag = bool_value(*e))
        listener.plaintext_auth = *flag;
      else
        ok = false;
    }
    if (const MapEntry* e = fields[4]) {
      if (auto checks = walk_checks(*e))
        listener.checks = std::move(*checks);
      else
        ok = false;
    } else if (listener.role == ListenerRole::smtp) {
      // Verifying the name costs a few lookups and makes Received worth reading; refusing on
      // it is left to the admin, since many legitimate senders lack one.
      listener.checks.fcrdns = lookup::CheckAction::tag;
    }
    if (!ok) return std::nullopt;
    placed.address_mark = address_entry->value.mark;
    if (name_entry != nullptr) {
      placed.name_mark = name_entry->value.mark;
    } else {
      listener.name =
          std::string(listener_role_name(listener.role)) + "/" + listener.address.to_string();
      placed.name_mark = placed.address_mark;
    }
    return placed;
  }

  // Replaces the default: a list given is the whole list, and [] trusts nobody.
  void walk_trusted_networks(const MapEntry& entry, std::vector<inet::Network>& networks) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'trusted_networks' must be a list");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      auto written =
          item.kind == Node::Kind::scalar
              ? inet::read_network(item.text)
              : Result<inet::WrittenNetwork, inet::NetworkProblem>(inet::NetworkProblem::syntax);
      const std::string bad = named("bad network", item);
      if (!written) {
        if (written.error() == inet::NetworkProblem::prefix_range) {
          walk_.at(item.mark, bad + ": prefix must be 0-" +
                                  (item.text.find(':') != std::string::npos ? "128" : "32"));
        } else {
          walk_.at(item.mark, bad +
                                  " (expected an IPv4 or IPv6 address with an optional "
                                  "/prefix, such as 192.0.2.0/24)");
        }
        continue;
      }
      const inet::Network& network = written->network;
      if (written->host_bits) {
        walk_.at(item.mark, bad + ": host bits set; did you mean " + network.to_string() + "?");
        continue;
      }
      const auto [first, fresh] = lines.emplace(network.to_string(), item.mark.line);
      if (!fresh) {
        walk_.at(item.mark, "duplicate network " + network.to_string() + " (first at line " +
                                std::to_string(first->second) + ")");
        continue;
      }
      if (networks.size() == lookup::kMaxTrustedNetworks) {
        walk_.at(item.mark,
                 "more than " + std::to_string(lookup::kMaxTrustedNetworks) + " networks");
        break;
      }
      networks.push_back(network);
    }
  }

  void walk_resolvers(const MapEntry& entry, std::vector<std::string>& resolvers) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'resolvers' must be a list of IP addresses");
      return;
    }
    std::map<std::string, int, std::less<>> lines;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) continue;
      auto resolver = item.kind == Node::Kind::scalar
                          ? read_resolver(item.text)
                          : Result<std::string, ResolverProblem>(ResolverProblem::syntax);
      if (!resolver) {
        const std::string bad = named("bad resolver", item);
        if (resolver.error() == ResolverProblem::port_range) {
          walk_.at(item.mark, bad + ": port must be 1-65535");
        } else {
          walk_.at(item.mark, bad + " (expected an IP address, optionally followed by @port)");
        }
        continue;
      }
      std::string text = std::move(resolver).value();
      // "192.0.2.1" and "192.0.2.1@53" are the same server.
      const std::string key = text.find('@') == std::string::npos ? text + "@53" : text;
      const auto [first, fresh] = lines.emplace(key, item.mark.line);
      if (!fresh) {
        walk_.at(item.mark, "duplicate resolver " + text + " (first at line " +
                                std::to_string(first->second) + ")");
        continue;
      }
      if (resolvers.size() == lookup::kMaxResolvers) {
        walk_.at(item.mark, "more than " + std::to_string(lookup::kMaxResolvers) + " resolvers");
        break;
      }
      resolvers.push_back(std::move(text));
    }
  }

  std::optional<lookup::CheckAction> action_value(const MapEntry& entry) {
    auto text = string_value(entry);
    if (!text) return std::nullopt;
    for (size_t i = 0; i < lookup::kCheckActionNames.size(); ++i) {
      if (lookup::kCheckActionNames[i] == *text) return static_cast<lookup::CheckAction>(i);
    }
    walk_.at(entry.value.mark, "bad " + quote(entry.key.text) + " value " + quote(*text) +
                                   " (expected one of: " + join(lookup::kCheckActionNames) + ")");
    return std::nullopt;
  }

  // A listener's checks. Keys left out are off, except dnsbl, which refuses once zones are
  // given: a list of zones is rarely written to be ignored.
  std::optional<lookup::ClientChecks> walk_checks(const MapEntry& entry) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return std::nullopt;
    if (value.kind != Node::Kind::mapping) {
      walk_.at(value.mark, "'checks' must be a mapping (with fcrdns, dnsbl, threshold, zones)");
      return std::nullopt;
    }
    const auto fields = check_keys(value, "'checks'", kChecksKeys);
    lookup::ClientChecks checks;
    bool ok = true;
    if (const MapEntry* e = fields[0]) {
      if (auto action = action_value(*e))
        checks.fcrdns = *action;
      else
        ok = false;
    }
    std::optional<lookup::CheckAction> dnsbl;
    if (const MapEntry* e = fields[1]) {
      dnsbl = action_value(*e);
      ok = ok && dnsbl.has_value();
    }
    bool threshold_given = false;
    if (const MapEntry* e = fields[2]) {
      if (auto n = number_value(*e, "", lookup::kMaxWeight)) {
        checks.threshold = static_cast<uint32_t>(*n);
        threshold_given = true;
      } else {
        ok = false;
      }
    }
    const bool zones_ok = fields[3] == nullptr || walk_zones(*fields[3], checks.zones);
    ok = ok && zones_ok;
    if (fields[3] == nullptr && dnsbl && *dnsbl != lookup::CheckAction::off) {
      walk_.at(fields[1]->value.mark,
               "'dnsbl: " + std::string(lookup::kCheckActionNames[static_cast<size_t>(*dnsbl)]) +
                   "' needs a list of 'zones' to ask");
      ok = false;
    }
    checks.dnsbl = dnsbl.value_or(checks.zones.empty() ? lookup::CheckAction::off
                                                       : lookup::CheckAction::refuse);
    // Only once every zone is known: a broken one must not make the threshold look too high.
    if (threshold_given && zones_ok) {
      uint64_t total = 0;
      for (const lookup::DnsblZone& zone : checks.zones) total += zone.weight;
      if (checks.threshold > total) {
        walk_.at(fields[2]->value.mark,
                 "'threshold' " + std::to_string(checks.threshold) +
                     " can never be reached (the weights of the zones add up to " +
                     std::to_string(total) + ")");
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return checks;
  }

  // "zen.spamhaus.org" or {zone: zen.spamhaus.org, codes: [127.0.0.2], weight: 2}; false when
  // any entry is broken.
  bool walk_zones(const MapEntry& entry, std::vector<lookup::DnsblZone>& zones) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return false;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'zones' must be a list of DNSBL zones");
      return false;
    }
    if (value.items.empty()) {
      walk_.at(value.mark, "'zones' is empty (leave it out when no DNSBL is asked)");
      return false;
    }
    std::map<std::string, int, std::less<>> lines;
    bool all_ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) {
        all_ok = false;
        continue;
      }
      const Node* name_node = &item;
      lookup::DnsblZone zone;
      if (item.kind == Node::Kind::mapping) {
        const auto fields = check_keys(item, "zone entry", kZoneKeys);
        bool ok = true;
        if (fields[0] == nullptr) {
          walk_.at(item.mark, "zone entry has no 'zone'");
          ok = false;
        } else {
          name_node = &fields[0]->value;
        }
        if (fields[1] != nullptr && !walk_codes(*fields[1], zone.codes)) ok = false;
        if (const MapEntry* e = fields[2]) {
          if (auto n = number_value(*e, "", lookup::kMaxWeight))
            zone.weight = static_cast<uint32_t>(*n);
          else
            ok = false;
        }
        if (!ok) {
          all_ok = false;
          continue;
        }
      }
      if (name_node->kind != Node::Kind::scalar) {
        if (name_node->kind != Node::Kind::invalid)
          walk_.at(name_node->mark,
                   "each zone must be a name or a mapping with zone, codes and weight");
        all_ok = false;
        continue;
      }
      std::string name = name_node->text;
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!name.empty() && name.back() == '.') name.pop_back();
      if (!valid_zone_name(name)) {
        walk_.at(name_node->mark, "invalid DNSBL zone " + quote(name_node->text) +
                                      " (expected labels of 1-63 letters, digits, '-' or "
                                      "'_', at most " +
                                      std::to_string(lookup::kMaxZoneName) + " characters)");
        all_ok = false;
        continue;
      }
      const auto [first, fresh] = lines.emplace(name, name_node->mark.line);
      if (!fresh) {
        walk_.at(name_node->mark, "duplicate zone " + quote(name) + " (first at line " +
                                      std::to_string(first->second) + ")");
        all_ok = false;
        continue;
      }
      if (zones.size() == lookup::kMaxDnsblZones) {
        walk_.at(name_node->mark, "more than " + std::to_string(lookup::kMaxDnsblZones) + " zones");
        all_ok = false;
        break;
      }
      zone.zone = std::move(name);
      zones.push_back(std::move(zone));
    }
    return all_ok;
  }

  // The A records that count as a listing. Blocklists answer inside 127.0.0.0/8 (RFC 5782
  // 2.3); anything else is an error page or a wildcard, never a listing.
  bool walk_codes(const MapEntry& entry, std::vector<std::string>& codes) {
    const Node& value = entry.value;
    if (value.kind == Node::Kind::invalid) return false;
    if (value.kind != Node::Kind::sequence) {
      walk_.at(value.mark, "'codes' must be a list of addresses in 127.0.0.0/8");
      return false;
    }
    if (value.items.empty()) {
      // [] reads as "nothing counts", which would silently ask the zone for nothing.
      walk_.at(value.mark,
               "'codes' is empty (leave it out to count any address in "
               "127.0.0.0/8)");
      return false;
    }
    std::map<std::string, int, std::less<>> lines;
    bool ok = true;
    for (const Node& item : value.items) {
      if (item.kind == Node::Kind::invalid) {
        ok = false;
        continue;
      }
      std::optional<sockaddr_storage> address;
      if (item.kind == Node::Kind::scalar) address = inet::parse_ip_address(item.text);
      if (!address || address->ss_family != AF_INET || inet::address_bytes(*address)[0] != 127) {
        walk_.at(item.mark, named("bad code", item) + " (expected an IPv4 address in 127.0.0.0/8)");
        ok = false;
        continue;
      }
      std::string code = inet::address_text(*address, inet::Mapped::as_ipv6);
      const auto [first, fresh] = lines.emplace(code, item.mark.line);
      if (!fresh) {
        walk_.at(item.mark, "duplicate code " + code + " (first at line " +
                                std::to_string(first->second) + ")");
        ok = false;
        continue;
      }
      if (codes.size() == lookup::kMaxDnsblCodes) {
        walk_.at(item.mark, "more than " + std::to_string(lookup::kMaxDnsblCodes) + " codes");
        ok = false;
        break;
      }
      codes.push_back(std::move(code));
    }
    return ok;
  }

  Walk& walk_;
};

}  // namespace

bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::string& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::vector<Listener>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::vector<lookup::Domain>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::vector<inet::Network>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::vector<std::string>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}

}  // namespace postern::smtpd
