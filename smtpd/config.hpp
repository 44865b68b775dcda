// The whole configuration as the parent holds it: the parent's own settings and each child's
// slice (declared in the child's api.hpp), read from smtpd.yaml by one table-driven walk
// (common/config/schema.hpp), checked across slices, and sent to each child as it is.
// Linked by smtpd and smtpctl (which checks files), the only programs that hold libyaml.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/config/config.hpp"
#include "common/config/tree.hpp"
#include "common/util/fields.hpp"
#include "common/util/inet.hpp"
#include "common/util/log.hpp"
#include "common/util/result.hpp"
#include "control/api.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "mta/api.hpp"
#include "queue/api.hpp"
#include "smtp/api.hpp"

namespace postern::smtpd {

using config::ConfigError;
using config::ConfigErrors;
using config::ListenerRole;

// Listener names show up in logs and smtpctl output, one word each.
constexpr size_t kMaxListenerName = 64;

// Where smtpctl looks for the daemon unless told otherwise (smtpctl -s, -f).
constexpr const char* kDefaultControlSocket = "/run/postern/smtpd.sock";

struct Control {
  std::string socket_path = kDefaultControlSocket;      // absolute
  std::optional<std::string> group;                     // may use smtpctl besides root
  std::vector<msg::PublicView> public_views;  // open to every local user on a second socket
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Control::socket_path, "socket", {.hook = "socket"}),
        field(&Control::group, "group", {.hook = "account"}),
        field(&Control::public_views, "public",
              {.count = std::size(msg::kPublicViewNames), .names = msg::kPublicViewNames}),
    };
  }
  friend bool operator==(const Control&, const Control&) = default;
};

struct Listener {
  std::string name;  // unique; defaults to "<role>/<address>"
  ListenerRole role = ListenerRole::smtp;
  inet::SocketAddress address;
  // AUTH is offered only under TLS unless this says otherwise (RFC 4954 4, RFC 8314).
  bool plaintext_auth = false;
  // Default: smtp listeners verify the client's name (fcrdns: tag); others check nothing.
  lookup::ClientChecks checks;
  // Read by the "listeners" hook (smtpd/config.cpp); the table lists the keys in the order
  // its messages do.
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Listener::address, "address", {.hook = "address", .required = true}),
        field(&Listener::role, "role", {.names = config::kListenerRoleNames}),
        field(&Listener::name, "name", {.length = kMaxListenerName}),
        field(&Listener::plaintext_auth, "plaintext_auth"),
        field(&Listener::checks, "checks"),
    };
  }
};

// The server certificate chain and key, PEM files (read by the parent, as root).
struct Tls {
  std::string certificate;  // absolute path
  std::string key;          // absolute path
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Tls::certificate, "certificate", {.hook = "path", .required = true}),
        field(&Tls::key, "key", {.hook = "path", .required = true}),
    };
  }
  friend bool operator==(const Tls&, const Tls&) = default;
};

// The Prometheus endpoint (served by the control process): off unless configured.
struct Metrics {
  std::string listen;  // IP:port or [IPv6]:port, written canonically
  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Metrics::listen, "listen", {.hook = "metrics_address", .required = true}),
    };
  }
  friend bool operator==(const Metrics&, const Metrics&) = default;
};

constexpr size_t kMaxListeners = lookup::kMaxListeners;

struct Config {
  std::string file;  // the file it was loaded from, as given
  // The parent's own settings.
  std::string user = "_smtpd";
  std::string queue_user = "_smtpq";
  // Owns the virtual users' mailboxes; mda runs as it. Defaults to user.
  std::optional<std::string> virtual_user;
  std::string spool_dir = "/var/spool/postern";
  std::string empty_dir = "/var/empty";
  Control control;
  // Holds the parent's pid file. Default: /run/postern when started by root, the spool
  // directory otherwise.
  std::optional<std::string> run_dir;
  std::vector<Listener> listeners;
  // Needed by STARTTLS and by smtps listeners.
  std::optional<Tls> tls;
  // "user:crypt-hash" lines for SMTP AUTH (absolute path); AUTH is not offered without it.
  std::optional<std::string> credentials;
  // The CA certificates the mta's verify policy checks servers against (PEM). Default: the
  // bundle libtls was built to use (tls_default_ca_cert_file()).
  std::optional<std::string> relay_ca_file;
  // Where the parent writes every process's lines (smtpd -d: stderr whatever this says).
  log::Output log;

  // Where each key's value was written, by its dotted path from the top ("tls.certificate",
  // "domains.example.org.aliases"): what is found wrong with the files a key names, after the
  // file was read (smtpd/preflight.hpp), points at the line that names them.
  std::map<std::string, config::Mark, std::less<>> places;
  // Each top-level key's value as config::canonical_text: a reload logs the keys that changed.
  std::map<std::string, std::string, std::less<>> sections;
  // An error at the place of key (file:line:column), or about the whole file when the key is
  // not written in it (its default applies).
  ConfigError error_at(std::string_view key, std::string message) const;
  std::optional<Metrics> metrics;

  // Each child's slice, sent to it as it is.
  smtp::Settings smtp;
  queue::Settings queue;
  mda::Settings mda;
  lookup::Settings lookup;
  mta::Settings mta;

  static constexpr auto fields() {
    using fields::field;
    return std::tuple{
        field(&Config::user, "user", {.hook = "account"}),
        field(&Config::queue_user, "queue_user", {.hook = "account"}),
        field(&Config::virtual_user, "virtual_user", {.hook = "account"}),
        field(&Config::spool_dir, "spool", {.hook = "path"}),
        field(&Config::empty_dir, "empty_dir", {.hook = "path"}),
        field(&Config::control, "control"),
        field(&Config::run_dir, "run_dir", {.hook = "path"}),
        field(&Config::listeners, "listeners",
              {.count = kMaxListeners, .hook = "listeners", .required = true}),
        field(&Config::tls, "tls"),
        field(&Config::credentials, "credentials", {.hook = "path"}),
        field(&Config::relay_ca_file, "relay_tls.ca_file", {.hook = "path"}),
        field(&Config::log, "log"),
        field(&Config::metrics, "metrics"),
    };
  }
};

// Calls f(slice) for the parent's own table and each child's: the roots of the schema walk.
template <typename Config_, typename F>
void for_each_slice(Config_& config, F&& f) {
  f(config);
  f(config.smtp);
  f(config.queue);
  f(config.mda);
  f(config.lookup);
  f(config.mta);
}

// Reads and validates a configuration file; every error found is reported, not just the
// first.
Result<Config, ConfigErrors> load_config(const std::string& path);
// The same from text already in memory; file names the source in errors and base_dir
// anchors relative paths.
Result<Config, ConfigErrors> parse_config(std::string_view text, const std::string& file,
                                          const std::string& base_dir);

}  // namespace postern::smtpd
