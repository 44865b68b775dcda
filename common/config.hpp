// The configuration model: what /etc/postern/smtpd.yaml says, typed and validated. Only the
// parent loads it; children receive the part they need over IPC (messages.hpp).
// Relative paths in the file are taken relative to the file's own directory.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace postern::config {

enum class ListenerRole : uint8_t { smtp, submission, smtps };
constexpr uint32_t kListenerRoleCount = 3;
std::string_view listener_role_name(ListenerRole role);

// An IP literal and port as written in the file: "127.0.0.1:25" or "[::1]:587".
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  int family() const { return storage.ss_family; }
  // "127.0.0.1:25", "[::1]:587"
  std::string to_string() const;
  friend bool operator==(const SocketAddress& a, const SocketAddress& b);
};
std::optional<SocketAddress> parse_socket_address(std::string_view text);

struct Listener {
  std::string name;  // unique; defaults to "<role>/<address>"
  ListenerRole role = ListenerRole::smtp;
  SocketAddress address;
  // AUTH is offered only under TLS unless this says otherwise (RFC 4954 4, RFC 8314).
  bool plaintext_auth = false;
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
  uint32_t command_timeout = 300;            // seconds; RFC 5321 4.5.3.2.7
  uint32_t data_timeout = 180;               // seconds between DATA blocks; 4.5.3.2.5
  uint32_t expire = 4 * 86400;               // seconds before undelivered mail bounces
  uint32_t retry_first = 60;                 // seconds before the first retry...
  uint32_t retry_max = 3600;                 // ...doubling up to this
  uint32_t delivery_timeout = 300;           // seconds a delivery command may run
  friend bool operator==(const Limits&, const Limits&) = default;
};

// The server certificate chain and key, PEM files (read by the parent, as root).
struct Tls {
  std::string certificate;  // absolute path
  std::string key;          // absolute path
  friend bool operator==(const Tls&, const Tls&) = default;
};

// A domain delivered here, and how its local parts are found and delivered.
struct Domain {
  std::string name;  // lower-case, no trailing dot
  // Who has a mailbox. Without any of these, any local part is taken (delivery decides).
  std::optional<std::vector<std::string>> users;  // a list of virtual users (lower-case)
  bool system_users = false;                      // "users: system": accounts of this host
  std::optional<std::string> users_table;         // a file of virtual users (absolute)
  // An aliases(5) file (absolute), consulted before the users.
  std::optional<std::string> aliases;
  // Where mail for an unknown local part goes (a local part or an address); off when unset.
  std::optional<std::string> catch_all;
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
  std::vector<Listener> listeners;
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
