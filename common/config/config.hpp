// The configuration model: what /etc/postern/smtpd.yaml says, typed and validated. Only the
// parent loads it; children receive the part they need over IPC (messages.hpp).
// Relative paths in the file are taken relative to the file's own directory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/inet.hpp"
#include "common/util/result.hpp"

namespace postern::config {

enum class ListenerRole : uint8_t { smtp, submission, smtps };
constexpr uint32_t kListenerRoleCount = 3;
std::string_view listener_role_name(ListenerRole role);

// Listeners and trusted networks are the generic kinds (common/util/inet.hpp), which the
// children read back from IPC without this file's parser.
using inet::Network;
using inet::SocketAddress;

// How many of each a file may list (the lists travel to lookup in one message).
constexpr size_t kMaxTrustedNetworks = 10000;
constexpr size_t kMaxResolvers = 64;
constexpr size_t kMaxDnsblZones = 100;
constexpr size_t kMaxDnsblCodes = 256;

// What a client's failed check leads to.
enum class CheckAction : uint8_t {
  off,     // not checked
  tag,     // the message gets an X-Postern-Checks: header; nothing is refused
  refuse,  // 554 5.7.1 instead of the greeting
};

// One DNS blocklist: the client is listed when <reversed address>.<zone> has an A record
// among codes (every 127.0.0.0/8 address when codes is empty); a listing adds weight.
struct DnsblZone {
  std::string zone;                // lower-case, no trailing dot
  std::vector<std::string> codes;  // IPv4 literals in 127.0.0.0/8
  uint32_t weight = 1;
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
  friend bool operator==(const ClientChecks&, const ClientChecks&) = default;
};

struct Listener {
  std::string name;  // unique; defaults to "<role>/<address>"
  ListenerRole role = ListenerRole::smtp;
  SocketAddress address;
  // AUTH is offered only under TLS unless this says otherwise (RFC 4954 4, RFC 8314).
  bool plaintext_auth = false;
  // Default: smtp listeners verify the client's name (fcrdns: tag); others check nothing.
  ClientChecks checks;
};

// How lookup asks DNS.
struct Dns {
  // Forwarders, "IP" or "IP@port"; empty: the nameservers of /etc/resolv.conf.
  std::vector<std::string> resolvers;
  uint32_t timeout = 5;  // seconds per question
  friend bool operator==(const Dns&, const Dns&) = default;
};

struct Control {
  std::string socket_path;           // absolute
  std::optional<std::string> group;  // may use smtpctl besides root
};

// Bounds on what one client may make Postern do; each has this one name and default.
struct Limits {
  uint64_t message_size = 35 * 1024 * 1024;  // octets, as SIZE advertises
  uint32_t recipients = 1000;                // per transaction
  uint32_t errors = 10;                      // bad commands in one session before 421
  uint32_t sessions = 1000;                  // concurrent SMTP sessions
  uint32_t sessions_per_ip = 50;             // concurrent sessions from one address
  uint32_t connection_rate = 60;      // connections a minute from one address before throttling
  uint32_t command_timeout = 300;     // seconds; RFC 5321 4.5.3.2.7
  uint32_t data_timeout = 180;        // seconds between DATA blocks; 4.5.3.2.5
  uint32_t expire = 4 * 86400;        // seconds before undelivered mail bounces
  uint32_t delay_warning = 4 * 3600;  // seconds before a delay notification (NOTIFY=DELAY); 0: none
  uint32_t retry_first = 60;          // seconds before the first retry...
  uint32_t retry_max = 3600;          // ...doubling up to this
  uint32_t delivery_timeout = 300;    // seconds a delivery command may run
  friend bool operator==(const Limits&, const Limits&) = default;
};

// The server certificate chain and key, PEM files (read by the parent, as root).
struct Tls {
  std::string certificate;  // absolute path
  std::string key;          // absolute path
  friend bool operator==(const Tls&, const Tls&) = default;
};

// Where a domain's aliases may name commands ("|command") or files (Postfix's
// allow_mail_to_commands and allow_mail_to_files): in its aliases file, in :include: files
// (which must besides be owned by root or by the aliases file's owner and writable by no one
// else). Default: the aliases file only.
struct AliasRights {
  bool aliases = true;
  bool include = false;
  friend bool operator==(const AliasRights&, const AliasRights&) = default;
};

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
  AliasRights alias_commands;
  AliasRights alias_files;
  // The delivery method, at most one: a Maildir path or an mbox file with %u for the local
  // part and %d for the domain (system users: "~/" for the home directory as well), an LMTP
  // server ("unix:/path" or "IP:port"), or a command run with the message on its stdin.
  std::optional<std::string> maildir;
  std::optional<std::string> mbox;
  std::optional<std::string> lmtp;
  std::optional<std::string> command;
  friend bool operator==(const Domain&, const Domain&) = default;
};

struct Config {
  std::string file;      // the file it was loaded from, as given
  std::string hostname;  // defaults to the machine's host name
  std::string user = "_smtpd";
  std::string queue_user = "_smtpq";
  // Owns the virtual users' mailboxes; mda runs as it. Defaults to user.
  std::optional<std::string> virtual_user;
  std::string spool_dir = "/var/spool/postern";
  std::string empty_dir = "/var/empty";
  Control control{"/run/postern/smtpd.sock", std::nullopt};
  // Holds the parent's pid file. Default: /run/postern when started by root, the spool
  // directory otherwise.
  std::optional<std::string> run_dir;
  std::vector<Listener> listeners;
  // Clients whose address is in one of these skip the client checks. Default: loopback
  // (127.0.0.0/8 and ::1); a list given in the file replaces it.
  std::vector<Network> trusted_networks;
  Dns dns;
  // Domains delivered locally.
  std::vector<Domain> domains;
  Limits limits;
  // Needed by STARTTLS and by smtps listeners.
  std::optional<Tls> tls;
  // "user:crypt-hash" lines for SMTP AUTH (absolute path); AUTH is not offered without it.
  std::optional<std::string> credentials;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is about the file as a whole
  int column = 0;  // 1-based
  std::string message;
  // "file:line:column: message", or "file: message" when line is 0.
  std::string to_string() const;
};
using ConfigErrors = std::vector<ConfigError>;

// Reads and validates a configuration file; every error found is reported, not just the
// first.
Result<Config, ConfigErrors> load_config(const std::string& path);
// The same from text already in memory; file names the source in errors and base_dir
// anchors relative paths.
Result<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                          const std::string& base_dir);

}  // namespace postern::config
