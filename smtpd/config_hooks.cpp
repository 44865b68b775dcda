// The keys of smtpd.yaml no field table can describe, read for the schema walk through their
// hook names (see config_hooks.hpp): ConfigHooks itself and the smaller keys, the control
// socket, trusted networks, resolvers, relay domains and the senders table. Listeners are read in
// config_listeners.cpp, domains in config_domains.cpp. Input is untrusted text (fuzzed).
#include "smtpd/config_hooks.hpp"

#include <sys/un.h>

#include <algorithm>
#include <map>
#include <utility>

#include "common/util/ascii.hpp"
#include "smtpd/config_key_reader.hpp"

namespace postern::smtpd::hooks {
namespace {

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

}  // namespace

bool KeyReader::control_socket(const MapEntry& entry, std::string& out) {
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

// Parsed again by the parent when it binds the socket; written here as it will print.
bool KeyReader::metrics_address(const MapEntry& entry, std::string& out) {
  const std::optional<std::string> text = string_value(entry);
  if (!text) return false;
  auto address = inet::read_socket_address(*text);
  if (!address) {
    walk_.at(entry.value.mark, "bad metrics address " + config::quote(*text) +
                                   (address.error() == inet::AddressProblem::port_range
                                        ? ": port must be 1-65535"
                                        : " (expected IP:port or [IPv6]:port)"));
    return false;
  }
  out = address.value().to_string();
  return true;
}

// Replaces the default: a list given is the whole list, and [] trusts nobody.
void KeyReader::walk_trusted_networks(const MapEntry& entry, std::vector<inet::Network>& networks) {
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
      walk_.at(item.mark, "more than " + std::to_string(lookup::kMaxTrustedNetworks) + " networks");
      break;
    }
    networks.push_back(network);
  }
}

void KeyReader::walk_resolvers(const MapEntry& entry, std::vector<std::string>& resolvers) {
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

// "example.org" or "*.example.org" (the names below it), written back lower-case without a
// trailing dot.
void KeyReader::walk_relay_domains(const MapEntry& entry, std::vector<std::string>& domains) {
  const Node& value = entry.value;
  if (value.kind == Node::Kind::invalid) return;
  if (value.kind != Node::Kind::sequence) {
    walk_.at(value.mark, "'relay_domains' must be a list of domains");
    return;
  }
  std::map<std::string, int, std::less<>> lines;
  for (const Node& item : value.items) {
    if (item.kind == Node::Kind::invalid) continue;
    std::string domain = item.kind == Node::Kind::scalar ? ascii::lower(item.text) : "";
    if (!domain.empty() && domain.back() == '.') domain.pop_back();
    const bool wildcard = domain.starts_with("*.");
    if (!config::valid_hostname(wildcard ? std::string_view(domain).substr(2) : domain)) {
      walk_.at(item.mark, named("bad relay domain", item) +
                              " (expected a domain such as example.org, or *.example.org for "
                              "the names below it)");
      continue;
    }
    const auto [first, fresh] = lines.emplace(domain, item.mark.line);
    if (!fresh) {
      walk_.at(item.mark, "duplicate relay domain " + config::quote(domain) + " (first at line " +
                              std::to_string(first->second) + ")");
      continue;
    }
    if (domains.size() == lookup::kMaxDomains) {
      walk_.at(item.mark, "more than " + std::to_string(lookup::kMaxDomains) + " relay domains");
      break;
    }
    walk_.remember("relay_domains." + domain, MapEntry{item, item});
    domains.push_back(std::move(domain));
  }
}

// A table's path, or "off": authenticated users may then send as anyone.
bool KeyReader::senders_table(const MapEntry& entry, std::optional<std::string>& out) {
  if (entry.value.kind == Node::Kind::scalar && entry.value.text == "off") {
    out = "off";  // config.cpp turns it into SenderRule::off
    return true;
  }
  std::string path;
  if (!path_value(entry, path)) return false;
  out = std::move(path);
  return true;
}

}  // namespace postern::smtpd::hooks

namespace postern::smtpd {

using config::MapEntry;
using config::Walk;
using hooks::KeyReader;

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
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::optional<std::string>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}
bool ConfigHooks::operator()(std::string_view hook, Walk& walk, const MapEntry& entry,
                             std::vector<mta::Route>& out) {
  return KeyReader(walk_)(hook, walk, entry, out);
}

}  // namespace postern::smtpd
