// Relay route grammar; see route.hpp.
#include "common/mail/route.hpp"

#include "common/util/ascii.hpp"
#include "common/util/inet.hpp"

namespace postern::mail {
namespace {

struct SchemeName {
  std::string_view prefix;
  RelayScheme scheme;
};
constexpr SchemeName kSchemes[] = {
    {"smtp://", RelayScheme::smtp},
    {"smtp+tls://", RelayScheme::smtp_tls},
    {"smtps://", RelayScheme::smtps},
    {"lmtp://", RelayScheme::lmtp},
};

// Letters, digits and '-' in labels of 1-63 octets, not starting or ending with '-'; at most
// 253 octets in all. A DNS host name, which is all an MX target or a relay can be.
bool valid_host_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxRelayHost) return false;
  size_t label = 0;
  char previous = '.';
  for (const char c : name) {
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else {
      const bool ldh = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
      if (!ldh || (label == 0 && c == '-') || ++label > 63) return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

std::optional<uint16_t> read_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  uint32_t port = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port < 1 || port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

}  // namespace

const char* scheme_prefix(RelayScheme scheme) {
  for (const auto& s : kSchemes)
    if (s.scheme == scheme) return s.prefix.data();
  return "?";
}

uint16_t default_port(RelayScheme scheme) {
  switch (scheme) {
    case RelayScheme::smtps:
      return 465;
    case RelayScheme::lmtp:
      return 24;
    default:
      return 25;
  }
}

std::string RelayHop::to_string() const {
  const bool v6 = literal && host.find(':') != std::string::npos;
  return std::string(scheme_prefix(scheme)) + (v6 ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

Result<RelayHop> parse_relay_hop(std::string_view text) {
  RelayHop hop;
  std::string_view rest;
  bool known = false;
  for (const auto& s : kSchemes) {
    if (text.starts_with(s.prefix)) {
      hop.scheme = s.scheme;
      rest = text.substr(s.prefix.size());
      known = true;
      break;
    }
  }
  if (!known)
    return make_error("expected smtp://, smtp+tls://, smtps:// or lmtp:// before the server");
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);  // "smtp://host:25/"
  std::string_view host = rest;
  std::optional<std::string_view> port;
  if (rest.starts_with("[")) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return make_error("'[' without ']' around the address");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return make_error("expected ':port' after ']'");
      port = after.substr(1);
    }
    const auto address = inet::parse_ip_address(host);
    if (!address) return make_error("not an IP address between '[' and ']'");
    hop.host = inet::address_text(*address, inet::Mapped::as_ipv6);
    hop.literal = true;
  } else {
    const size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      if (rest.find(':', colon + 1) != std::string_view::npos)
        return make_error("an IPv6 address must be written in brackets: [2001:db8::1]:25");
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
    if (host.empty()) return make_error("no server named");
    if (const auto address = inet::parse_ip_address(host)) {
      hop.host = inet::address_text(*address, inet::Mapped::as_ipv6);
      hop.literal = true;
    } else {
      std::string name = ascii::lower(host);
      if (name.ends_with('.')) name.pop_back();
      if (!valid_host_name(name))
        return make_error("not a host name or IP address: letters, digits, '-' and '.'");
      hop.host = std::move(name);
    }
  }
  if (port) {
    const auto number = read_port(*port);
    if (!number) return make_error("the port must be a number from 1 to 65535");
    hop.port = *number;
  } else {
    hop.port = default_port(hop.scheme);
  }
  return hop;
}

std::optional<std::string> normalize_domain_pattern(std::string_view pattern) {
  std::string text = ascii::lower(pattern);
  if (text.ends_with('.')) text.pop_back();
  const bool wildcard = text.starts_with("*.");
  if (!valid_host_name(wildcard ? std::string_view(text).substr(2) : std::string_view(text)))
    return std::nullopt;
  return text;
}

bool domain_matches(std::string_view pattern, std::string_view domain) {
  if (!pattern.starts_with("*.")) return pattern == domain;
  const std::string_view suffix = pattern.substr(1);  // ".example.org"
  return domain.size() > suffix.size() && domain.ends_with(suffix);
}

}  // namespace postern::mail
