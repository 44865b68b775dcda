// The "listeners" key of smtpd.yaml, read for the schema walk (see config_key_reader.hpp):
// each listener's address, role, name and plaintext_auth, and its client checks (fcrdns,
// DNSBL zones with their codes and weights, threshold). Input is untrusted text (fuzzed).
#include "smtpd/config_key_reader.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <utility>

namespace postern::smtpd::hooks {
namespace {

using config::join;
using config::quote;

constexpr auto kListenerKeys = config::file_keys<Listener>();
constexpr auto kChecksKeys = config::file_keys<lookup::ClientChecks>();
constexpr auto kZoneKeys = config::file_keys<lookup::DnsblZone>();

bool valid_listener_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxListenerName) return false;
  for (const char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
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

}  // namespace

void KeyReader::walk_listeners(const MapEntry& entry, std::vector<Listener>& listeners) {
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
    const auto [first_name, fresh_name] = name_lines.emplace(listener.name, placed->name_mark.line);
    if (!fresh_name) {
      walk_.at(placed->name_mark, "duplicate listener name " + quote(listener.name) +
                                      " (first defined at line " +
                                      std::to_string(first_name->second) + ")");
      continue;
    }
    listeners.push_back(std::move(placed->listener));
  }
}

std::optional<KeyReader::PlacedListener> KeyReader::walk_listener(const Node& item) {
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
        walk_.at(e->value.mark, "unknown listener role " + quote(*role) +
                                    " (expected one of: " + join(config::kListenerRoleNames) + ")");
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
        walk_.at(name_entry->value.mark, "invalid listener name " + quote(*name) + " (expected 1-" +
                                             std::to_string(kMaxListenerName) +
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

std::optional<lookup::CheckAction> KeyReader::action_value(const MapEntry& entry) {
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
std::optional<lookup::ClientChecks> KeyReader::walk_checks(const MapEntry& entry) {
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
  checks.dnsbl =
      dnsbl.value_or(checks.zones.empty() ? lookup::CheckAction::off : lookup::CheckAction::refuse);
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
bool KeyReader::walk_zones(const MapEntry& entry, std::vector<lookup::DnsblZone>& zones) {
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
bool KeyReader::walk_codes(const MapEntry& entry, std::vector<std::string>& codes) {
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
      walk_.at(item.mark,
               "duplicate code " + code + " (first at line " + std::to_string(first->second) + ")");
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

}  // namespace postern::smtpd::hooks
