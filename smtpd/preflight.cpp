// The checks before a start or a reload; see preflight.hpp. Tables are parsed here with
// lookup's parsers (the lookup-tables library) so that what smtpd -n accepts is what lookup
// will load; a credentials file's text is wiped once checked and its lines never echoed.
#include "smtpd/preflight.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/util/io.hpp"
#include "lookup/aliases.hpp"
#include "lookup/credentials.hpp"
#include "lookup/relay_policy.hpp"
#include "lookup/table.hpp"
#include "smtpd/host.hpp"
#include "smtpd/relay_auth.hpp"

namespace postern::smtpd {
namespace {

std::string table_label(msg::TableKind kind) {
  switch (kind) {
    case msg::TableKind::credentials:
      return "credentials";
    case msg::TableKind::aliases:
      return "aliases";
    case msg::TableKind::users:
      return "users table";
    case msg::TableKind::senders:
      return "senders table";
  }
  return "table";
}

// The table's own errors ("file:line: message"), none when lookup would load it.
std::vector<std::string> table_errors(msg::TableKind kind, const std::string& path,
                                      std::string_view text) {
  switch (kind) {
    case msg::TableKind::credentials: {
      auto table = lookup::CredentialTable::parse(text, path);
      std::vector<std::string> errors;
      if (!table.ok())
        for (const auto& e : table.error()) errors.push_back(e.to_string());
      return errors;
    }
    case msg::TableKind::aliases: {
      auto table = lookup::AliasTable::parse(text, path);
      if (!table.ok()) return {table.error().to_string()};
      return {};
    }
    case msg::TableKind::users: {
      auto table = lookup::UserTable::parse(text, path);
      if (!table.ok()) return {table.error().to_string()};
      return {};
    }
    case msg::TableKind::senders: {
      auto table = lookup::SenderTable::parse(text, path);
      if (!table.ok()) return {table.error().to_string()};
      return {};
    }
  }
  return {};
}

void check_table(const Config& config, const TableRef& table, ConfigErrors& errors) {
  const std::string label = table_label(table.kind);
  UniqueFd fd = open_table(table.path);
  if (!fd) {
    const int err = errno;
    errors.push_back(config.error_at(
        table.key, label + " " + table.path + ": " + std::strerror(err) +
                       (err == ELOOP ? " (tables are never opened through a symbolic link)" : "")));
    return;
  }
  std::string text;
  if (Status read = read_all(fd.get(), lookup::kMaxTableFile, text); !read.ok()) {
    explicit_bzero(text.data(), text.size());
    errors.push_back(config.error_at(table.key, label + " " + read.error().message));
    return;
  }
  for (const std::string& e : table_errors(table.kind, table.path, text)) {
    std::string message = label;
    message += " ";
    message += e;
    errors.push_back(config.error_at(table.key, std::move(message)));
  }
  explicit_bzero(text.data(), text.size());
}

// The daemon's users exist and are not root (what resolve_identities needs as root), and the
// control group exists (what binding the control socket needs, as any user).
void check_accounts(const Config& config, ConfigErrors& errors) {
  if (geteuid() == 0) {
    struct Account {
      const char* key;
      const std::string& name;
    };
    std::vector<Account> accounts = {{"user", config.user}, {"queue_user", config.queue_user}};
    if (config.virtual_user) accounts.push_back({"virtual_user", *config.virtual_user});
    for (const Account& a : accounts) {
      const passwd* pw = getpwnam(a.name.c_str());
      if (pw == nullptr)
        errors.push_back(config.error_at(
            a.key, std::string(a.key) + " " + config::quote(a.name) +
                       " does not exist (create it, e.g. with systemd-sysusers and Postern's "
                       "sysusers.d file, or useradd --system)"));
      else if (pw->pw_uid == 0 || pw->pw_gid == 0)
        errors.push_back(config.error_at(a.key, std::string(a.key) + " " + config::quote(a.name) +
                                                    " must not have uid or gid 0"));
    }
  }
  if (config.control.group && getgrnam(config.control.group->c_str()) == nullptr)
    errors.push_back(config.error_at(
        "control.group",
        "control group " + config::quote(*config.control.group) + " does not exist"));
  if (!config.control.public_views.empty() &&
      msg::public_socket_path(config.control.socket_path).size() >= sizeof(sockaddr_un::sun_path))
    errors.push_back(config.error_at("control.public",
                                     "the public socket " +
                                         msg::public_socket_path(config.control.socket_path) +
                                         " would be too long; choose a shorter control.socket"));
}

}  // namespace

std::vector<TableRef> table_files(const Config& config) {
  std::vector<TableRef> found;
  if (config.credentials)
    found.push_back({msg::TableKind::credentials, *config.credentials, "credentials"});
  if (config.lookup.senders)
    found.push_back({msg::TableKind::senders, *config.lookup.senders, "senders"});
  for (const auto& d : config.lookup.domains) {
    if (d.aliases)
      found.push_back({msg::TableKind::aliases, *d.aliases, "domains." + d.name + ".aliases"});
    if (d.users_table)
      found.push_back({msg::TableKind::users, *d.users_table, "domains." + d.name + ".users"});
  }
  return found;
}

UniqueFd open_table(const std::string& path) {
  return UniqueFd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW));
}

Result<Preflight, ConfigErrors> preflight(Config& config) {
  ConfigErrors errors;
  Preflight out;
  if (config.tls) {
    Result<TlsMaterial> material = load_tls_material(*config.tls);
    if (material.ok())
      out.tls = std::move(material).value();
    else
      errors.push_back(config.error_at("tls.certificate", "tls: " + material.error().message));
  }
  if (Status read = load_relay_credentials(config.mta); !read.ok())
    errors.push_back(config.error_at("routes", "routes: auth: " + read.error().message));
  if (config.relay_ca_file) {
    if (UniqueFd fd(open(config.relay_ca_file->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)); !fd)
      errors.push_back(config.error_at(
          "relay_tls.ca_file",
          "relay_tls.ca_file " + *config.relay_ca_file + ": " + std::strerror(errno)));
  }
  for (const TableRef& table : table_files(config)) check_table(config, table, errors);
  check_accounts(config, errors);
  // The directories' rules need the users' ids: only once they are known.
  if (Result<Identities> ids = resolve_identities(config); ids.ok()) {
    for (const HostProblem& p : check_directories(config, ids.value()))
      errors.push_back(config.error_at(p.key, p.message));
  }
  if (errors.empty()) return out;
  std::stable_sort(errors.begin(), errors.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return errors;
}

}  // namespace postern::smtpd
