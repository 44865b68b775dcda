// smtpd-mta's interface: what the other processes send it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/ipc/messages.hpp"
#include "common/mail/envelope.hpp"
#include "common/mail/route.hpp"
#include "common/util/fields.hpp"
#include "queue/api.hpp"

namespace postern::mta {

// ===== Configuration: mta's slice of smtpd.yaml, sent by the parent ========================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

constexpr size_t kMaxRoutes = 1000;
constexpr size_t kMaxRouteMatches = 1000;  // domains and patterns of one route
constexpr size_t kMaxRouteHops = 16;       // servers of one route
constexpr size_t kMaxLocalAddresses = 256;
constexpr size_t kMaxAuthField = 512;  // a route's AUTH login, and its password

// A configured route (smtpd.yaml `routes:`): mail for a domain it matches goes to its servers,
// tried in order, rather than by MX; a route without servers goes by MX with its own TLS
// policy. Read by the "routes" hook (smtpd/config_routes.cpp).
struct Route {
  std::vector<std::string> match;   // domains and "*.domain" patterns (mail/route.hpp)
  std::vector<mail::RelayHop> via;  // in the order to try them; empty: by MX
  std::string auth;                 // a credentials file for AUTH to the relay; empty: none
  // Unset: smtp+tls:// and smtps:// servers encrypt, the others follow relay_tls.policy.
  std::optional<mail::TlsPolicy> tls;
  // What the auth file says ("login:password"), read by the parent: mta opens no file.
  std::string auth_login;
  std::string auth_password;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Route::match, "match", {.length = mail::kMaxRelayHost, .count = kMaxRouteMatches}),
        field(&Route::via, "via", {.count = kMaxRouteHops}),
        field(&Route::auth, "auth", {.length = msg::kMaxPathLength}),
        field(&Route::tls, "tls", {.names = mail::kTlsPolicyNames}),
        field(&Route::auth_login, "auth_login",
              {.length = kMaxAuthField, .origin = fields::Origin::parent}),
        field(&Route::auth_password, "auth_password",
              {.length = kMaxAuthField, .origin = fields::Origin::parent}),
    };
  }
  friend bool operator==(const Route&, const Route&) = default;
};

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::mta_config);
  std::string hostname;       // our name in EHLO, and in the Received: trace of a relayed DSN
  std::vector<Route> routes;  // first match wins; the rest goes by MX
  // The addresses this server listens on ("192.0.2.1:25", "[::1]:25"), from the listeners: an
  // MX host or a route that leads here is a loop (RFC 5321 5.1).
  std::vector<std::string> local_addresses;
  // Connections open at once, to all destinations, and to one destination (a route, or a
  // domain's MX hosts); Postfix's default_process_limit and default_destination_concurrency_limit.
  uint32_t connections = 500;
  uint32_t destination_connections = 20;
  // A connection is reused for this many messages, and kept open this long without one
  // (Postfix's smtp_connection_reuse_count_limit and smtp_connection_cache_time_limit).
  uint32_t messages_per_connection = 100;
  uint32_t connection_idle = 5;  // seconds
  // More Received: headers than this: a loop, bounced 5.4.6 (Postfix's hopcount_limit).
  uint32_t hop_count = 100;
  // The TLS policy of mail sent by MX (and of smtp:// and lmtp:// routes without their own).
  mail::TlsPolicy tls_policy = mail::TlsPolicy::opportunistic;
  // Opportunistic TLS whose handshake fails: the same server is tried again without TLS
  // (logged), as Postfix does; false: the failure defers like a refused connection.
  bool plaintext_fallback = true;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Settings::hostname, "hostname", {.length = 255, .hook = "hostname"}),
        field(&Settings::routes, "routes", {.count = kMaxRoutes, .hook = "routes"}),
        field(&Settings::local_addresses, "local_addresses",
              {.length = msg::kMaxAddressText,
               .count = kMaxLocalAddresses,
               .origin = fields::Origin::parent}),
        field(&Settings::connections, "limits.relay_connections", {.min = 1, .max = 100000}),
        field(&Settings::destination_connections, "limits.destination_connections",
              {.min = 1, .max = 10000}),
        field(&Settings::messages_per_connection, "limits.messages_per_connection",
              {.min = 1, .max = 1000000}),
        field(&Settings::connection_idle, "limits.connection_idle",
              {.max = 3600, .unit = fields::kHours}),
        field(&Settings::hop_count, "limits.hop_count", {.min = 1, .max = 1000}),
        field(&Settings::tls_policy, "relay_tls.policy", {.names = mail::kTlsPolicyNames}),
        field(&Settings::plaintext_fallback, "relay_tls.plaintext_fallback"),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>());

// The CA certificates the verify policy checks servers against (relay_tls.ca_file, by default
// libtls's), opened by the parent and read by mta from the descriptor: mta opens no file.
// Sent after Settings, at start and on every reload.
constexpr size_t kMaxCaFileSize = 8 * 1024 * 1024;
struct CaFile {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::mta_ca_file);
  std::string name;  // the file's path, for messages
  static constexpr auto fields() {
    return std::tuple{fields::field(&CaFile::name, "name", {.length = msg::kMaxPathLength})};
  }
};

// ===== End of configuration ================================================================

}  // namespace postern::mta

// --- messages mta receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.

namespace postern::msg {

// A recipient of a DeliverRemote: where its result goes (index in the envelope) and what the
// next server needs of it (ORCPT and NOTIFY, passed on when the server offers DSN).
struct RemoteRecipient {
  uint32_t index = 0;
  std::string address;
  std::string orcpt_type;
  std::string orcpt;
  DsnNotify notify;
  bool valid() const { return !address.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RemoteRecipient::index, "index"),
        fields::field(&RemoteRecipient::address, "address", {.length = kMaxField}),
        fields::field(&RemoteRecipient::orcpt_type, "orcpt_type", {.length = kMaxField}),
        fields::field(&RemoteRecipient::orcpt, "orcpt", {.length = mail::kMaxOrcptAddress}),
        fields::field(&RemoteRecipient::notify, "notify"),
    };
  }
  friend bool operator==(const RemoteRecipient&, const RemoteRecipient&) = default;
};

// Send this message (the descriptor: read-only, its first envelope.size bytes) to these
// remote recipients. The envelope carries what the MAIL command needs (sender, SIZE, BODY,
// SMTPUTF8, RET, ENVID); its recipients are empty. The results come back as DeliveryReport
// under the same request id, one DeliveryResult per recipient.
struct DeliverRemote {
  static constexpr MessageInfo kInfo = schema(Type::deliver_remote);
  Envelope envelope;
  std::vector<RemoteRecipient> recipients;
  bool valid() const { return !recipients.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&DeliverRemote::envelope, "envelope"),
        fields::field(&DeliverRemote::recipients, "recipients", {.count = kLocalRecipientsPerJob}),
    };
  }
};

// ok: hosts to try, in order. no_domain: the domain does not exist; null_mx: it takes no
// mail (RFC 7505); no_address: no host of it has an address (all permanent). temporary: try
// again later.
enum class MxStatus : uint8_t { ok, no_domain, null_mx, no_address, temporary };
constexpr uint32_t kMxStatusCount = 5;

constexpr size_t kMaxMxHosts = 64;
constexpr size_t kMaxMxAddresses = 64;  // per host

struct MxHost {
  uint16_t preference = 0;
  std::string name;
  std::vector<std::string> addresses;  // in the order to try them
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxHost::preference, "preference"),
        fields::field(&MxHost::name, "name", {.length = kMaxDomainLength}),
        fields::field(&MxHost::addresses, "addresses",
                      {.length = kMaxAddressText, .count = kMaxMxAddresses}),
    };
  }
  friend bool operator==(const MxHost&, const MxHost&) = default;
};

struct MxAnswer {
  static constexpr MessageInfo kInfo = schema(Type::mx_answer);
  MxStatus status = MxStatus::temporary;
  bool implicit = false;  // no MX records: the domain's own addresses
  std::vector<MxHost> hosts;
  std::string error;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxAnswer::status, "status", {.values = kMxStatusCount}),
        fields::field(&MxAnswer::implicit, "implicit"),
        fields::field(&MxAnswer::hosts, "hosts", {.count = kMaxMxHosts}),
        fields::field(&MxAnswer::error, "error", {.length = kMaxField}),
    };
  }
};

}  // namespace postern::msg
