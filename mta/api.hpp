// smtpd-mta's interface: what the other processes send it.
#pragma once

#include <array>
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
// Source addresses (smtpd.yaml `source`, `relay_source`): at most one IPv4 and one IPv6 address,
// each used for the servers of its family (mta/source.hpp). Read by the "source" hook
// (smtpd/config_routes.cpp), which keeps them as inet::address_text writes them.
constexpr size_t kMaxSources = 2;
constexpr fields::Bounds kSourceBounds = {
    .length = msg::kMaxAddressText, .count = kMaxSources, .hook = "source"};

// A wait of the outgoing client (smtpd.yaml relay_timeouts): a second to a day.
constexpr fields::Bounds kTimeoutBounds = {.min = 1, .max = 86400, .unit = fields::kHours};

// A configured route (smtpd.yaml `routes:`): mail for a domain it matches goes to its servers,
// tried in order, rather than by MX; a route without servers goes by MX with its own TLS
// policy. Read by the "routes" hook (smtpd/config_routes.cpp).
struct Route {
  std::vector<std::string> match;   // domains and "*.domain" patterns (mail/route.hpp)
  std::vector<mail::RelayHop> via;  // in the order to try them; empty: by MX
  std::string auth;                 // a credentials file for AUTH to the relay; empty: none
  // Unset: smtp+tls:// and smtps:// servers encrypt, the others follow relay_tls.policy.
  std::optional<mail::TlsPolicy> tls;
  // The addresses connections to its servers (or, without servers, to its domains' MX hosts)
  // leave from; empty: its shaping rule's, else relay_source.
  std::vector<std::string> source;
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
        field(&Route::source, "source", kSourceBounds),
        field(&Route::auth_login, "auth_login",
              {.length = kMaxAuthField, .origin = fields::Origin::parent}),
        field(&Route::auth_password, "auth_password",
              {.length = kMaxAuthField, .origin = fields::Origin::parent}),
    };
  }
  friend bool operator==(const Route&, const Route&) = default;
};

// A shaping rule (smtpd.yaml `shaping:`): the destinations it matches — by recipient domain, or
// by the name of their most preferred MX host — form one *site* that shares one budget: messages
// a minute, connections, suspensions and slow-downs. Unset limits take the limits.* defaults.
// A list of rules rather than keys on routes: a site is often mail sent by MX (every domain
// hosted at one provider), which no route names.
constexpr size_t kMaxShapingRules = 1000;
constexpr size_t kMaxShapingPatterns = 1000;
struct Shaping {
  std::vector<std::string> match;  // recipient domains, "*.domain" for those under it
  std::vector<std::string> mx;     // MX host names, "*.google.com" for those under it
  std::optional<uint32_t> rate;    // messages a minute (token bucket); 0: unlimited
  std::optional<uint32_t> connections;
  std::optional<uint32_t> messages_per_connection;
  std::optional<uint32_t> recipients;  // a transaction
  // The addresses connections to the site leave from; empty: relay_source. A route's win.
  std::vector<std::string> source;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Shaping::match, "match",
              {.length = mail::kMaxRelayHost, .count = kMaxShapingPatterns}),
        field(&Shaping::mx, "mx", {.length = mail::kMaxRelayHost, .count = kMaxShapingPatterns}),
        field(&Shaping::rate, "rate", {.max = 1000000}),
        field(&Shaping::connections, "connections", {.min = 1, .max = 10000}),
        field(&Shaping::messages_per_connection, "messages_per_connection",
              {.min = 1, .max = 1000000}),
        field(&Shaping::recipients, "recipients", {.min = 1, .max = msg::kLocalRecipientsPerJob}),
        field(&Shaping::source, "source", kSourceBounds),
    };
  }
  friend bool operator==(const Shaping&, const Shaping&) = default;
};

// What a reply rule does to the site whose server answered.
enum class ReplyAction : uint8_t { suspend, slow_rate, slow_connections };
constexpr std::array<std::string_view, 3> kReplyActionNames = {"suspend", "slow_rate",
                                                               "slow_connections"};

// A reply rule (smtpd.yaml `reply_rules:`): threshold replies that match within window seconds
// trigger the action for duration seconds; a slow-down then steps back every recover seconds
// (rate +1/10 of the configured one, connections +1). Only servers' replies count: failures
// Postern decided itself (timeouts, refused connections: code 0) never do.
constexpr size_t kMaxReplyRules = 100;
struct ReplyRule {
  std::string name;        // for the log and smtpctl
  uint32_t code = 0;       // the reply code; 0: any 4xx or 5xx
  std::string status;      // the enhanced status code ("4.7.28"); empty: any
  std::string text;        // in the reply's text, without regard to case; empty: any
  bool greeting = false;   // only replies to the connection (the greeting)
  uint32_t threshold = 1;  // replies within window
  uint32_t window = 60;    // seconds
  ReplyAction action = ReplyAction::slow_rate;
  uint32_t duration = 600;  // seconds
  uint32_t recover = 60;    // seconds between steps back
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&ReplyRule::name, "name", {.length = 64}),
        field(&ReplyRule::code, "code", {.max = 599}),
        field(&ReplyRule::status, "status", {.length = 16}),
        field(&ReplyRule::text, "text", {.length = 128}),
        field(&ReplyRule::greeting, "greeting"),
        field(&ReplyRule::threshold, "threshold", {.min = 1, .max = 10000}),
        field(&ReplyRule::window, "window", {.min = 1, .max = 86400, .unit = fields::kDays}),
        field(&ReplyRule::action, "action", {.names = kReplyActionNames}),
        field(&ReplyRule::duration, "duration",
              {.min = 1, .max = 7 * 86400, .unit = fields::kDays}),
        field(&ReplyRule::recover, "recover", {.min = 1, .max = 86400, .unit = fields::kDays}),
    };
  }
  friend bool operator==(const ReplyRule&, const ReplyRule&) = default;
};

// The shipped rules, from what the big receivers document (man/smtpd.yaml.5 lists them).
inline std::vector<ReplyRule> default_reply_rules() {
  auto rule = [](std::string name, uint32_t code, std::string status, std::string text,
                 bool greeting, uint32_t threshold, ReplyAction action, uint32_t duration) {
    return ReplyRule{.name = std::move(name),
                     .code = code,
                     .status = std::move(status),
                     .text = std::move(text),
                     .greeting = greeting,
                     .threshold = threshold,
                     .window = 60,
                     .action = action,
                     .duration = duration,
                     .recover = 60};
  };
  using A = ReplyAction;
  return {
      rule("gmail-rate", 421, "4.7.28", "", false, 1, A::slow_rate, 600),
      rule("microsoft-4.7.650", 0, "4.7.650", "", false, 1, A::slow_rate, 1800),
      rule("microsoft-4.7.651", 0, "4.7.651", "", false, 1, A::slow_rate, 1800),
      rule("microsoft-4.7.500", 0, "4.7.500", "", false, 1, A::suspend, 3600),
      rule("yahoo-tss04", 0, "", "[TSS04]", false, 1, A::suspend, 4 * 3600),
      rule("yahoo-tss05", 0, "", "[TSS05]", false, 1, A::suspend, 4 * 3600),
      rule("rate-limited", 0, "", "rate limit", false, 3, A::slow_rate, 600),
      rule("too-many-connections", 0, "", "too many connections", false, 3, A::slow_connections,
           600),
      rule("greeting-421", 421, "", "", true, 3, A::slow_connections, 600),
  };
}

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
  // The addresses outgoing connections leave from, unless a route or a shaping rule names its
  // own; empty: the system chooses.
  std::vector<std::string> relay_source;
  // Traffic shaping (mta/shaping.hpp): the defaults of every site, its rules and the rules
  // that react to replies.
  uint32_t destination_rate = 0;  // messages a minute; 0: unlimited
  uint32_t recipients_per_transaction = msg::kLocalRecipientsPerJob;
  // A delivery over its site's rate waits in mta this long at most; longer, it is deferred with
  // the time the site has room again (the queue's retry_after).
  uint32_t rate_hold = 60;  // seconds
  std::vector<Shaping> shaping;
  std::vector<ReplyRule> reply_rules = default_reply_rules();
  // How long the client waits for each step of a session, in seconds (smtpd.yaml
  // relay_timeouts): RFC 5321 4.5.3.2's minimums, and Postfix's smtp_*_timeout for the steps
  // it does not name (mail::ClientTimeouts).
  uint32_t timeout_connect = 30;
  uint32_t timeout_greeting = 300;
  uint32_t timeout_hello = 300;
  uint32_t timeout_mail = 300;
  uint32_t timeout_rcpt = 300;
  uint32_t timeout_data = 120;
  uint32_t timeout_data_block = 180;
  uint32_t timeout_data_end = 600;
  uint32_t timeout_quit = 300;
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
        field(&Settings::relay_source, "relay_source", kSourceBounds),
        field(&Settings::destination_rate, "limits.destination_rate", {.max = 1000000}),
        field(&Settings::recipients_per_transaction, "limits.recipients_per_transaction",
              {.min = 1, .max = msg::kLocalRecipientsPerJob}),
        field(&Settings::rate_hold, "limits.rate_hold", {.max = 3600, .unit = fields::kHours}),
        field(&Settings::shaping, "shaping", {.count = kMaxShapingRules}),
        field(&Settings::reply_rules, "reply_rules", {.count = kMaxReplyRules}),
        field(&Settings::timeout_connect, "relay_timeouts.connect", kTimeoutBounds),
        field(&Settings::timeout_greeting, "relay_timeouts.greeting", kTimeoutBounds),
        field(&Settings::timeout_hello, "relay_timeouts.hello", kTimeoutBounds),
        field(&Settings::timeout_mail, "relay_timeouts.mail", kTimeoutBounds),
        field(&Settings::timeout_rcpt, "relay_timeouts.rcpt", kTimeoutBounds),
        field(&Settings::timeout_data, "relay_timeouts.data", kTimeoutBounds),
        field(&Settings::timeout_data_block, "relay_timeouts.data_block", kTimeoutBounds),
        field(&Settings::timeout_data_end, "relay_timeouts.data_end", kTimeoutBounds),
        field(&Settings::timeout_quit, "relay_timeouts.quit", kTimeoutBounds),
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
// under the same request id, one DeliveryResult per recipient. A message with more recipients
// than one frame holds comes in several, each with the same request id and descriptor, all
// but the last with more set: mta gathers them into one job, so that the recipients of one
// destination still share one transaction.
struct DeliverRemote {
  static constexpr MessageInfo kInfo = schema(Type::deliver_remote);
  Envelope envelope;
  std::vector<RemoteRecipient> recipients;
  bool more = false;
  bool valid() const { return !recipients.empty(); }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&DeliverRemote::envelope, "envelope"),
        fields::field(&DeliverRemote::recipients, "recipients", {.count = kLocalRecipientsPerJob}),
        fields::field(&DeliverRemote::more, "more"),
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
