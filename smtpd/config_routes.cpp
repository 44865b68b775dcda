// The "routes" key of smtpd.yaml, read for the schema walk (see config_key_reader.hpp): each
// route's domains and patterns (match), its servers in failover order (via, the grammar of
// common/mail/route.hpp; none: by MX), its TLS policy (tls), its credentials file (auth) and
// its source addresses (source, read as shaping rules' and relay_source are). Input is
// untrusted text (fuzzed).
#include <algorithm>
#include <map>
#include <span>
#include <utility>

#include "common/mail/route.hpp"
#include "common/util/inet.hpp"
#include "smtpd/config_key_reader.hpp"

namespace postern::smtpd::hooks {
namespace {

using config::quote;

constexpr auto kRouteKeys = config::file_keys<mta::Route>();

// A string or a list of strings; the nodes of the strings, or nullopt (reported) when the value
// is something else.
std::optional<std::vector<const Node*>> scalars(Walk& walk, const MapEntry& entry,
                                                std::string_view what) {
  const Node& value = entry.value;
  std::vector<const Node*> out;
  if (value.kind == Node::Kind::invalid) return std::nullopt;
  if (value.kind == Node::Kind::scalar) {
    out.push_back(&value);
    return out;
  }
  if (value.kind != Node::Kind::sequence || value.items.empty()) {
    walk.at(value.mark, quote(entry.key.text) + " must be " + std::string(what) +
                            " or a non-empty list of them");
    return std::nullopt;
  }
  for (const Node& item : value.items) {
    if (item.kind == Node::Kind::invalid) continue;
    if (item.kind != Node::Kind::scalar) {
      walk.at(item.mark, "each item of " + quote(entry.key.text) + " must be " + std::string(what));
      continue;
    }
    out.push_back(&item);
  }
  return out;
}

}  // namespace

// Replaces the default (no routes); the order is kept: the first route that matches wins.
void KeyReader::walk_routes(const MapEntry& entry, std::vector<mta::Route>& routes) {
  const Node& value = entry.value;
  if (value.kind == Node::Kind::invalid) return;
  if (value.kind != Node::Kind::sequence) {
    walk_.at(value.mark, "'routes' must be a list of routes (each with match, and via or tls)");
    return;
  }
  // A pattern named by two routes: the second would never be used.
  std::map<std::string, int, std::less<>> pattern_lines;
  for (const Node& item : value.items) {
    if (item.kind == Node::Kind::invalid) continue;
    if (item.kind != Node::Kind::mapping) {
      walk_.at(item.mark, "route must be a mapping (with match, and via or tls)");
      continue;
    }
    std::optional<mta::Route> route = walk_route(item);
    if (!route) continue;
    bool fresh_route = true;
    for (const std::string& pattern : route->match) {
      const auto [first, fresh] = pattern_lines.emplace(pattern, item.mark.line);
      if (!fresh && first->second != item.mark.line) {
        walk_.at(item.mark, "domain " + quote(pattern) + " is matched by an earlier route (line " +
                                std::to_string(first->second) + ")");
        fresh_route = false;
      }
    }
    if (!fresh_route) continue;
    if (routes.size() == mta::kMaxRoutes) {
      walk_.at(item.mark, "more than " + std::to_string(mta::kMaxRoutes) + " routes");
      break;
    }
    routes.push_back(std::move(*route));
  }
}

std::optional<mta::Route> KeyReader::walk_route(const Node& item) {
  const auto found = check_keys(item, "a route", kRouteKeys);
  const MapEntry* match = found[0];
  const MapEntry* via = found[1];
  const MapEntry* auth = found[2];
  const MapEntry* tls = found[3];
  const MapEntry* source = found[4];
  bool ok = true;
  if (match == nullptr) {
    walk_.at(item.mark, "route without 'match' (each route needs the domains it is for)");
    return std::nullopt;
  }
  if (via == nullptr && tls == nullptr && source == nullptr) {
    walk_.at(item.mark,
             "route without 'via', 'tls' or 'source' (servers to send to, or the TLS policy or "
             "source address of mail sent by MX)");
    return std::nullopt;
  }
  mta::Route route;
  if (source != nullptr && !walk_source(*source, route.source)) ok = false;
  if (const auto nodes = scalars(walk_, *match, "a domain")) {
    for (const Node* n : *nodes) {
      const auto pattern = mail::normalize_domain_pattern(n->text);
      if (!pattern) {
        walk_.at(n->mark, named("bad domain", *n) +
                              " (expected a domain such as example.org, or *.example.org for "
                              "every domain under it)");
        ok = false;
        continue;
      }
      if (route.match.size() == mta::kMaxRouteMatches) {
        walk_.at(n->mark, "more than " + std::to_string(mta::kMaxRouteMatches) + " domains");
        ok = false;
        break;
      }
      route.match.push_back(*pattern);
    }
  } else {
    ok = false;
  }
  if (tls != nullptr) {
    if (const auto index = walk_.name_value(*tls, mail::kTlsPolicyNames))
      route.tls = static_cast<mail::TlsPolicy>(*index);
    else
      ok = false;
  }
  if (via == nullptr) {
    if (auth != nullptr) {
      walk_.at(auth->key.mark, "'auth' needs the servers it is for ('via')");
      ok = false;
    }
  } else if (const auto nodes = scalars(walk_, *via, "a server (smtp://host:port)")) {
    for (const Node* n : *nodes) {
      Result<mail::RelayHop> hop = mail::parse_relay_hop(n->text);
      if (!hop.ok()) {
        walk_.at(n->mark, named("bad server", *n) + ": " + hop.error().message);
        ok = false;
        continue;
      }
      if (route.via.size() == mta::kMaxRouteHops) {
        walk_.at(n->mark, "more than " + std::to_string(mta::kMaxRouteHops) + " servers");
        ok = false;
        break;
      }
      const bool needs_tls = hop.value().scheme == mail::RelayScheme::smtp_tls ||
                             hop.value().scheme == mail::RelayScheme::smtps;
      if (needs_tls && route.tls && *route.tls < mail::TlsPolicy::encrypt) {
        walk_.at(n->mark, named("server", *n) +
                              " is TLS only; the route's 'tls' must be encrypt "
                              "or verify, not " +
                              std::string(mail::policy_name(*route.tls)));
        ok = false;
      }
      route.via.push_back(std::move(hop).value());
    }
  } else {
    ok = false;
  }
  if (auth != nullptr && via != nullptr) {
    if (!path_value(*auth, route.auth)) {
      ok = false;
    } else if (!route.tls || *route.tls < mail::TlsPolicy::encrypt) {
      // RFC 4954 4 and every sane client: a password never goes over a plain connection.
      for (const mail::RelayHop& hop : route.via) {
        if (hop.scheme == mail::RelayScheme::smtp_tls || hop.scheme == mail::RelayScheme::smtps)
          continue;
        walk_.at(auth->key.mark,
                 "'auth' needs TLS to every server of the route: " + hop.to_string() +
                     " is not smtp+tls:// or smtps://, and the route's 'tls' is "
                     "not encrypt or verify");
        ok = false;
        break;
      }
    }
  }
  if (!ok) return std::nullopt;
  return route;
}

// An address or a list of two, at most one of each family, literals only: the mta binds them
// chrooted, without DNS, and the kernel chooses the port.
bool KeyReader::walk_source(const MapEntry& entry, std::vector<std::string>& sources) {
  const size_t before = walk_.errors();
  sources.clear();
  const auto nodes = scalars(walk_, entry, "an IP address");
  if (!nodes) return false;
  for (const Node* n : *nodes) {
    const auto address = inet::parse_ip_address(n->text);
    if (!address) {
      walk_.at(n->mark, named("bad source address", *n) +
                            " (expected an IP address such as 192.0.2.1 or 2001:db8::1, "
                            "without a port)");
      continue;
    }
    const std::span<const uint8_t> bytes = inet::address_bytes(*address);
    if (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) {
      walk_.at(n->mark, named("source address", *n) +
                            " is the wildcard address; leave 'source' out to let the system "
                            "choose");
      continue;
    }
    const bool v6 = address->ss_family == AF_INET6;
    if (std::any_of(sources.begin(), sources.end(), [v6](const std::string& other) {
          return (other.find(':') != std::string::npos) == v6;
        })) {
      walk_.at(n->mark, named("source address", *n) + " is a second " + (v6 ? "IPv6" : "IPv4") +
                            " address (give at most one IPv4 and one IPv6 address: each is "
                            "used for the servers of its family)");
      continue;
    }
    sources.push_back(inet::address_text(*address, inet::Mapped::as_ipv6));
  }
  return walk_.errors() == before;
}

}  // namespace postern::smtpd::hooks
