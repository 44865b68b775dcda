// The grammar of relay routes (smtpd.yaml's `routes:`): the servers a route sends through
// ("smtp://host:port", "lmtp://[ip]:port"...) and the domain patterns it matches ("example.org",
// "*.example.org"). The parent reads them from the configuration file with these functions;
// the mta matches recipients' domains with domain_matches. Input is untrusted text; no lookup
// happens here (host names are resolved by the mta through lookup).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "common/util/fields.hpp"
#include "common/util/result.hpp"

namespace postern::mail {

// smtp: plain SMTP (opportunistic STARTTLS is the TLS policy's business); smtp_tls: SMTP with
// STARTTLS required; smtps: TLS from the first byte (RFC 8314); lmtp: LMTP over TCP (RFC 2033).
enum class RelayScheme : uint8_t { smtp, smtp_tls, smtps, lmtp };
constexpr uint32_t kRelaySchemeCount = 4;
const char* scheme_prefix(RelayScheme scheme);  // "smtp://", "smtp+tls://"...
uint16_t default_port(RelayScheme scheme);      // 25, 25, 465, 24

constexpr size_t kMaxRelayHost = 253;

// How the mta protects a connection (smtpd.yaml `relay_tls: policy`, a route's `tls`). none:
// never STARTTLS; opportunistic: STARTTLS when offered, any certificate; encrypt: TLS required,
// any certificate; verify: TLS required, the certificate's chain checked against the CA file
// and its name against the server's (the MX host's or the route's).
enum class TlsPolicy : uint8_t { none, opportunistic, encrypt, verify };
constexpr std::array<std::string_view, 4> kTlsPolicyNames = {"none", "opportunistic", "encrypt",
                                                             "verify"};
inline std::string_view policy_name(TlsPolicy policy) {
  return kTlsPolicyNames[static_cast<size_t>(policy)];
}

// One server of a route.
struct RelayHop {
  RelayScheme scheme = RelayScheme::smtp;
  std::string host;      // a host name (lower-case, no trailing dot), or an IP address's text
  bool literal = false;  // host is an IP address, used as it is (no lookup)
  uint16_t port = 25;
  // "smtp://mx.example.org:25", "lmtp://[::1]:24": the form it was written in, canonical.
  std::string to_string() const;
  // The parent fills these in from the text (parse_relay_hop): no key of the file names them.
  static constexpr auto fields() {
    constexpr auto kParsed = fields::Origin::parent;
    return std::tuple{
        fields::field(&RelayHop::scheme, "scheme",
                      {.values = kRelaySchemeCount, .origin = kParsed}),
        fields::field(&RelayHop::host, "host", {.length = kMaxRelayHost, .origin = kParsed}),
        fields::field(&RelayHop::literal, "literal", {.origin = kParsed}),
        fields::field(&RelayHop::port, "port", {.min = 1, .max = 65535, .origin = kParsed}),
    };
  }
  friend bool operator==(const RelayHop&, const RelayHop&) = default;
};

// "smtp://host:port", "smtp+tls://host", "smtps://[2001:db8::1]:465", "lmtp://127.0.0.1:24":
// a scheme, then a host name, an IPv4 address or a bracketed IP address, then an optional
// port (the scheme's default otherwise). The error says what is wrong, for the config reader.
Result<RelayHop> parse_relay_hop(std::string_view text);

// A domain pattern as written ("Example.ORG.", "*.example.org"), lower-cased and without its
// trailing dot; nullopt when it is not a domain name, or "*." and a domain name.
std::optional<std::string> normalize_domain_pattern(std::string_view pattern);

// pattern as normalize_domain_pattern gives it; domain lower-case without trailing dot.
// "*.example.org" matches every name under example.org (any depth) but not example.org itself
// (as in relay_domains and Postfix's transport maps with a leading dot).
bool domain_matches(std::string_view pattern, std::string_view domain);

}  // namespace postern::mail
