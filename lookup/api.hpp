// smtpd-lookup's interface: what the other processes send it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/ipc/field_codec.hpp"
#include "common/ipc/messages.hpp"
#include "common/util/fields.hpp"
#include "common/util/inet.hpp"

namespace postern::wire {
// A network travels as its text ("192.0.2.0/24") and is parsed back.
template <>
struct Codec<inet::Network> {
  static constexpr size_t kMinSize = 4;
  static void encode(Writer& w, const inet::Network& n) { w.str(n.to_string()); }
  static inet::Network decode(Reader& r) {
    std::optional<inet::Network> parsed = inet::parse_network(r.str(64));
    if (!parsed) r.fail();
    return parsed.value_or(inet::Network{});
  }
};
}  // namespace postern::wire

namespace postern::lookup {

// ===== Configuration: lookup's slice of smtpd.yaml, sent by the parent =====================
// Each struct lists its fields once (common/util/fields.hpp): that table drives the
// configuration walk (smtpd/config.cpp), the wire encoding and the man page check.

// How many of each a file may list (the lists travel to lookup in one message).
constexpr size_t kMaxDomains = 100000;
constexpr size_t kMaxUsers = 1000000;
constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomainName = 253;
constexpr size_t kMaxTrustedNetworks = 10000;
constexpr size_t kMaxResolvers = 64;
constexpr size_t kMaxDnsblZones = 100;
constexpr size_t kMaxDnsblCodes = 256;
constexpr size_t kMaxListeners = 10000;
// A DNSBL query is <reversed client address>.<zone>, and an IPv6 address reversed into
// nibbles takes 64 octets ("b.a.9.8...."): the zone must leave room for them within the 253
// octets a name may have in text (RFC 1035 2.3.4: 255 on the wire).
constexpr size_t kMaxZoneName = 253 - 64;
// Weights and thresholds of DNSBL zones; a count beyond it would be a typo.
constexpr uint64_t kMaxWeight = 1000;
// Seconds per DNS question: longer would hold a client at the greeting for minutes.
constexpr uint64_t kMaxDnsTimeout = 60;
// The daemon's own users (smtpd, queue, virtual mail).
constexpr size_t kMaxDaemonUsers = 8;

// What a client's failed check leads to.
enum class CheckAction : uint8_t {
  off,     // not checked
  tag,     // the message gets an X-Postern-Checks: header; nothing is refused
  refuse,  // 554 5.7.1 instead of the greeting
};
constexpr std::array<std::string_view, 3> kCheckActionNames = {"off", "tag", "refuse"};

// One DNS blocklist: the client is listed when <reversed address>.<zone> has an A record
// among codes (every 127.0.0.0/8 address when codes is empty); a listing adds weight.
struct DnsblZone {
  std::string zone;                // lower-case, no trailing dot
  std::vector<std::string> codes;  // IPv4 literals in 127.0.0.0/8
  uint32_t weight = 1;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&DnsblZone::zone, "zone", {.length = kMaxZoneName, .required = true}),
        field(&DnsblZone::codes, "codes", {.length = 15, .count = kMaxDnsblCodes}),
        field(&DnsblZone::weight, "weight", {.min = 1, .max = kMaxWeight}),
    };
  }
  friend bool operator==(const DnsblZone&, const DnsblZone&) = default;
};

// Checks made on a client before the greeting, unless its address is trusted. A DNS failure
// (timeout, SERVFAIL) never refuses a client: the check counts as passed and is logged.
struct ClientChecks {
  // Forward-confirmed reverse DNS: the verified name goes into Received either way unless
  // this is off; tag or refuse decide what a client without one gets.
  CheckAction fcrdns = CheckAction::off;
  CheckAction dnsbl = CheckAction::off;  // what a score reaching threshold leads to
  uint32_t threshold = 1;
  std::vector<DnsblZone> zones;  // asked in parallel
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&ClientChecks::fcrdns, "fcrdns", {.names = kCheckActionNames}),
        field(&ClientChecks::dnsbl, "dnsbl", {.names = kCheckActionNames}),
        field(&ClientChecks::threshold, "threshold", {.min = 1, .max = kMaxWeight}),
        field(&ClientChecks::zones, "zones", {.count = kMaxDnsblZones}),
    };
  }
  friend bool operator==(const ClientChecks&, const ClientChecks&) = default;
};

// A listener's client checks, by listener name.
struct ListenerChecks {
  std::string listener;
  ClientChecks checks;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&ListenerChecks::listener, "listener", {.length = msg::kMaxNameLength}),
        field(&ListenerChecks::checks, "checks"),
    };
  }
  friend bool operator==(const ListenerChecks&, const ListenerChecks&) = default;
};

// How lookup asks DNS.
struct Dns {
  // Forwarders, "IP" or "IP@port"; empty: the nameservers of /etc/resolv.conf (the parent
  // fills them in).
  std::vector<std::string> resolvers;
  uint32_t timeout = 5;  // seconds per question
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Dns::resolvers, "resolvers",
              {.length = 64, .count = kMaxResolvers, .hook = "resolvers"}),
        field(&Dns::timeout, "timeout",
              {.min = 1, .max = kMaxDnsTimeout, .unit = fields::kSeconds}),
    };
  }
  friend bool operator==(const Dns&, const Dns&) = default;
};

// Where a domain's aliases may name commands ("|command") or files (Postfix's
// allow_mail_to_commands and allow_mail_to_files): in its aliases file, in :include: files
// (which must besides be owned by root or by the aliases file's owner and writable by no one
// else). Default: the aliases file only. Written in the file as a list: [aliases, include].
struct AliasRights {
  bool aliases = true;
  bool include = false;
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{field(&AliasRights::aliases, "aliases"),
                      field(&AliasRights::include, "include")};
  }
  friend bool operator==(const AliasRights&, const AliasRights&) = default;
};
constexpr std::array<std::string_view, 2> kAliasSourceNames = {"aliases", "include"};

// Debian's Postfix and OpenSMTPD separate an address extension with "+".
constexpr std::string_view kDefaultRecipientDelimiter = "+";
constexpr size_t kMaxRecipientDelimiters = 16;

// A domain delivered here, and how its local parts are found and delivered.
struct Domain {
  std::string name;  // lower-case, no trailing dot
  // Who has a mailbox. Without any of these, any local part is taken (delivery decides).
  std::optional<std::vector<std::string>> users;  // a list of virtual users (lower-case)
  bool system_users = false;                      // "users: system": accounts of this host
  // users: system: accounts below this uid are no mailboxes (common/mail/accounts.hpp).
  uint32_t min_uid = 1000;
  std::optional<std::string> users_table;  // a file of virtual users (absolute)
  // An aliases(5) file (absolute), consulted before the users.
  std::optional<std::string> aliases;
  // Where mail for an unknown local part goes (a local part or an address); off when unset.
  std::optional<std::string> catch_all;
  // Plus addressing: "user+tag" that is neither an alias nor a user is looked up as "user"
  // (each character is a delimiter, as in Postfix's recipient_delimiter); empty: off.
  std::string recipient_delimiter = std::string(kDefaultRecipientDelimiter);
  AliasRights alias_commands;
  AliasRights alias_files;
  // The delivery method, at most one: a Maildir path or an mbox file with %u for the local
  // part and %d for the domain (system users: "~/" for the home directory as well), an LMTP
  // server ("unix:/path" or "IP:port"), or a command run with the message on its stdin.
  std::optional<std::string> maildir;
  std::optional<std::string> mbox;
  std::optional<std::string> lmtp;
  std::optional<std::string> command;
  // Read by the "domains" hook of smtpd/config.cpp, which knows how the keys depend on each
  // other (users: system allows ~/ paths and min_uid); the table lists them in the order its
  // messages do.
  static constexpr auto fields() {
    using fields::field;
    constexpr size_t kPath = msg::kMaxPathLength;
    constexpr fields::Origin kDerived = fields::Origin::parent;
    return std::tuple{
        field(&Domain::name, "name", {.length = kMaxDomainName, .required = true}),
        field(&Domain::users, "users",
              {.length = kMaxLocalPart, .count = kMaxUsers, .hook = "users"}),
        field(&Domain::aliases, "aliases", {.length = kPath, .hook = "path"}),
        field(&Domain::catch_all, "catch_all", {.length = 254}),
        field(&Domain::maildir, "maildir", {.length = kPath}),
        field(&Domain::mbox, "mbox", {.length = kPath}),
        field(&Domain::lmtp, "lmtp", {.length = kPath}),
        field(&Domain::command, "command", {.length = kPath}),
        field(&Domain::alias_commands, "alias_commands", {.hook = "alias_rights"}),
        field(&Domain::alias_files, "alias_files", {.hook = "alias_rights"}),
        field(&Domain::min_uid, "min_uid", {.min = 1, .max = 0xfffffffe}),
        field(&Domain::recipient_delimiter, "recipient_delimiter",
              {.length = kMaxRecipientDelimiters}),
        // Both written as "users" (system, or a table's path).
        field(&Domain::system_users, "system_users", {.origin = kDerived}),
        field(&Domain::users_table, "users_table", {.length = kPath, .origin = kDerived}),
    };
  }
  friend bool operator==(const Domain&, const Domain&) = default;
};

// Loopback, 127.0.0.0/8 and ::1: the trusted networks unless the file gives a list.
inline std::vector<inet::Network> loopback_networks() {
  return {*inet::parse_network("127.0.0.0/8"), *inet::parse_network("::1/128")};
}

// What an authenticated user may write in MAIL FROM (lookup/relay_policy.hpp): own, the
// default, is "the login itself when it is an address, login@<a local domain> when it is a
// bare name, and what the senders table grants"; off lets any user send as anyone.
enum class SenderRule : uint8_t { own, off };

struct Settings {
  static constexpr msg::MessageInfo kInfo = msg::schema(msg::Type::lookup_config);
  std::vector<Domain> domains;  // delivered locally
  // Domains any client may send to (Postern is their gateway or backup MX): lower-case, no
  // trailing dot; "*.example.org" covers the names below example.org, not example.org.
  std::vector<std::string> relay_domains;
  // Clients whose address is in one of these skip the client checks; a list given in the
  // file replaces the default.
  std::vector<inet::Network> trusted_networks = loopback_networks();
  // Clients in trusted_networks may also relay anywhere (Postfix's permit_mynetworks).
  bool trusted_networks_relay = false;
  // The senders table (absolute path): login -> the addresses it may use besides its own.
  std::optional<std::string> senders;
  SenderRule sender_rule = SenderRule::own;  // "senders: off" in the file
  Dns dns;
  // Connections a minute from one address before throttling; 0: no limit.
  uint32_t connection_rate = 60;
  // Each listener's checks (written under listeners in the file).
  std::vector<ListenerChecks> checks;
  // The daemon's own users, which are never mailboxes (common/mail/accounts.hpp); uids only
  // when the parent runs as root.
  std::vector<std::string> daemon_users;
  std::vector<uint32_t> daemon_uids;

  static constexpr auto fields() {
    using fields::field;
    constexpr fields::Origin kParent = fields::Origin::parent;
    return std::tuple{
        field(&Settings::domains, "domains", {.count = kMaxDomains, .hook = "domains"}),
        field(&Settings::relay_domains, "relay_domains",
              {.length = kMaxDomainName, .count = kMaxDomains, .hook = "relay_domains"}),
        field(&Settings::trusted_networks, "trusted_networks",
              {.count = kMaxTrustedNetworks, .hook = "networks"}),
        field(&Settings::trusted_networks_relay, "trusted_networks_relay"),
        field(&Settings::senders, "senders", {.length = msg::kMaxPathLength, .hook = "senders"}),
        field(&Settings::sender_rule, "sender_rule", {.values = 2, .origin = kParent}),
        field(&Settings::dns, "dns"),
        field(&Settings::connection_rate, "limits.connection_rate", {.min = 0, .max = 1000000}),
        field(&Settings::checks, "checks", {.count = kMaxListeners, .origin = kParent}),
        field(&Settings::daemon_users, "daemon_users",
              {.length = msg::kMaxNameLength, .count = kMaxDaemonUsers, .origin = kParent}),
        field(&Settings::daemon_uids, "daemon_uids", {.count = kMaxDaemonUsers, .origin = kParent}),
    };
  }
  friend bool operator==(const Settings&, const Settings&) = default;
};
static_assert(fields::well_formed<Settings>() && fields::well_formed<Domain>());

// ===== End of configuration ================================================================

}  // namespace postern::lookup

// --- messages lookup receives
// Each payload takes its row of the schema (common/ipc/messages.hpp: number, senders,
// receivers, descriptor) and lists its fields once; a sender includes this header to send it.
// The types keep the msg:: namespace every sender and receiver names them by.

namespace postern::msg {

// Is this recipient acceptable here? Asked at RCPT time so bad mail is refused in the session.
// The local part as smtp decoded it: four times RFC 5321's octets leaves room for UTF-8.
constexpr size_t kMaxLocalPartText = address::kMaxLocalPart * 4;
struct RcptCheck {
  static constexpr MessageInfo kInfo = schema(Type::rcpt_check);
  std::string local_part;
  std::string domain;          // normalised (address::normalize_domain); empty for <postmaster>
  bool literal = false;        // the domain is an address literal
  bool authenticated = false;  // smtp's word; lookup decides from what it verified itself
  uint64_t session = 0;        // smtp's session id (SessionOpen)
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RcptCheck::local_part, "local_part", {.length = kMaxLocalPartText}),
        fields::field(&RcptCheck::domain, "domain", {.length = kMaxDomainLength}),
        fields::field(&RcptCheck::literal, "literal"),
        fields::field(&RcptCheck::authenticated, "authenticated"),
        fields::field(&RcptCheck::session, "session"),
    };
  }
};

// A new SMTP session, with its accepted connection as the descriptor: lookup reads the
// client's and the local address from the socket itself and closes it. What lookup learns
// here and the identity it verifies in AUTH are what the relay check trusts, not smtp.
struct SessionOpen {
  static constexpr MessageInfo kInfo = schema(Type::session_open);
  uint64_t session = 0;  // smtp's session id, never 0
  std::string listener;  // the listener's name, as smtp says it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SessionOpen::session, "session", {.min = 1}),
        fields::field(&SessionOpen::listener, "listener", {.length = kMaxNameLength}),
    };
  }
};

struct SessionClose {
  static constexpr MessageInfo kInfo = schema(Type::session_close);
  uint64_t session = 0;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SessionClose::session, "session"),
    };
  }
};

// Before the queue commits a message with a recipient outside the local domains: may this
// session send it? The rest is what smtp wrote in the envelope, checked against lookup's own
// record of the session; lookup confirms every domain and the sender. A message with more
// remote domains than fit one frame is asked about in several (each must be allowed).
constexpr size_t kMaxRelayDomains = 1000;
constexpr size_t kRelayDomainBytes = 32 * 1024;  // the domains of one RelayCheck, in octets
struct RelayCheck {
  static constexpr MessageInfo kInfo = schema(Type::relay_check);
  uint64_t session = 0;
  std::string client_address;
  std::string listener;
  std::string auth_user;
  std::string sender;                // the envelope's, empty for <>
  std::vector<std::string> domains;  // the recipient domains that are not local, each once
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&RelayCheck::session, "session"),
        fields::field(&RelayCheck::client_address, "client_address", {.length = kMaxField}),
        fields::field(&RelayCheck::listener, "listener", {.length = kMaxField}),
        fields::field(&RelayCheck::auth_user, "auth_user", {.length = kMaxField}),
        fields::field(&RelayCheck::sender, "sender", {.length = kMaxField}),
        fields::field(&RelayCheck::domains, "domains",
                      {.length = kMaxDomainLength, .count = kMaxRelayDomains}),
    };
  }
};

// At MAIL FROM in a session that authenticated: may its user send as this address? smtp's
// question for the client's benefit (553 during the conversation); the relay check asks the
// same of lookup again for mail that leaves.
struct SenderCheck {
  static constexpr MessageInfo kInfo = schema(Type::sender_check);
  uint64_t session = 0;
  std::string sender;  // address::to_string of MAIL FROM; empty for <>
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&SenderCheck::session, "session"),
        fields::field(&SenderCheck::sender, "sender", {.length = kMaxField}),
    };
  }
};

// Before the greeting: is this client welcome, and what is its verified name?
struct ClientCheck {
  static constexpr MessageInfo kInfo = schema(Type::client_check);
  std::string listener;  // the listener's name, whose checks apply
  std::string address;   // the client's IP address, as inet::address_text writes it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ClientCheck::listener, "listener", {.length = kMaxNameLength}),
        fields::field(&ClientCheck::address, "address", {.length = kMaxAddressText}),
    };
  }
};

// Where mail for domain goes (MX, answered with MxAnswer). With host set, domain is a server's
// name (a route's relay): its own addresses only, no MX, answered as one host.
struct MxQuery {
  static constexpr MessageInfo kInfo = schema(Type::mx_query);
  std::string domain;
  bool host = false;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&MxQuery::domain, "domain", {.length = kMaxDomainLength}),
        fields::field(&MxQuery::host, "host"),
    };
  }
};

// An open descriptor of the credentials table, opened by the parent (the file is root's);
// name is the path, for error messages.
// A table file the parent opened (as root) for lookup to read: at start and on every reload.
enum class TableKind : uint8_t { credentials, aliases, users, senders };
constexpr uint32_t kTableKindCount = 4;
struct TableFile {
  static constexpr MessageInfo kInfo = schema(Type::table_file);
  TableKind kind = TableKind::credentials;
  std::string name;  // its path, as the config names it
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&TableFile::kind, "kind", {.values = kTableKindCount}),
        fields::field(&TableFile::name, "name", {.length = kMaxPathLength}),
    };
  }
};

// RFC 4954: authzid is not supported, so only who and what.
constexpr size_t kMaxAuthText = 1024;  // user name, password
struct AuthCheck {
  static constexpr MessageInfo kInfo = schema(Type::auth_check);
  std::string user;
  std::string password;
  std::string client_address;  // for the failure throttle
  uint64_t session = 0;        // lookup remembers who this session authenticated as
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&AuthCheck::user, "user", {.length = kMaxAuthText}),
        fields::field(&AuthCheck::password, "password", {.length = kMaxAuthText}),
        fields::field(&AuthCheck::client_address, "client_address", {.length = kMaxAddressText}),
        fields::field(&AuthCheck::session, "session"),
    };
  }
};

struct ResolveLocal {
  // The parent asks too: it confirms a delivery helper's destination (smtpd/helpers.cpp).
  static constexpr MessageInfo kInfo = schema(Type::resolve_local);
  std::vector<std::string> addresses;
  bool valid() const {
    return std::none_of(addresses.begin(), addresses.end(),
                        [](const auto& a) { return a.empty(); });
  }
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ResolveLocal::addresses, "addresses",
                      {.length = kMaxField, .count = kResolveBatch}),
    };
  }
};

// The parent's answer to a ForwardOpen, under its request id: the file's descriptor (read
// only) when found; none when the user has no .forward; refused when the account, the home
// or the file fails a check (the reason says which; the mail goes to the mailbox); failed when
// it could not be read (an I/O error: the delivery is tried again later).
enum class ForwardStatus : uint8_t { found, none, refused, failed };
constexpr std::array<std::string_view, 4> kForwardStatusNames = {"found", "none", "refused",
                                                                 "failed"};
struct ForwardFile {
  static constexpr MessageInfo kInfo = schema(Type::forward_file);
  std::string user;
  ForwardStatus status = ForwardStatus::none;
  std::string reason;
  static constexpr auto fields() {
    return std::tuple{
        fields::field(&ForwardFile::user, "user", {.length = kMaxNameLength}),
        fields::field(&ForwardFile::status, "status", {.names = kForwardStatusNames}),
        fields::field(&ForwardFile::reason, "reason", {.length = kMaxReason}),
    };
  }
};

}  // namespace postern::msg
