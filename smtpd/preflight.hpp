// What a start checks beyond the file's own syntax: the files and accounts the configuration
// names, as the daemon will use them. Run by smtpd -n, before every start and before a reload
// is taken; any problem refuses it, named at the line of the key behind it (file:line:column).
// Reads files as root would, never creates or changes anything on the host.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "lookup/api.hpp"
#include "smtpd/config.hpp"
#include "smtpd/tls_files.hpp"

namespace postern::smtpd {

// A table file lookup reads: what it holds, its path, and the key of smtpd.yaml that names it
// (for Config::error_at).
struct TableRef {
  msg::TableKind kind = msg::TableKind::credentials;
  std::string path;
  std::string key;
};
// Every table file the configuration names.
std::vector<TableRef> table_files(const Config& config);
// A table opened the way lookup gets it: read-only, never through a symbolic link (a link
// would let whoever may write its directory point lookup at another file).
UniqueFd open_table(const std::string& path);

// What the start goes on with once every check passed.
struct Preflight {
  std::optional<TlsMaterial> tls;  // read, and known to make a TLS server
};

// Checks, in this order, and reports every problem found: the certificate and key (readable,
// and the key matching the certificate), the routes' auth files (their credentials go into
// config.mta, for the mta), relay_tls.ca_file, every table (opened as lookup gets it, then read
// and parsed whole with lookup's own parsers: aliases, users, credentials, senders), the
// daemon's users and control group, and the spool, jail and run directories (existing ones as
// the start wants them, missing ones creatable).
Result<Preflight, ConfigErrors> preflight(Config& config);

}  // namespace postern::smtpd
