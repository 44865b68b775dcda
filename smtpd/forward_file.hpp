// Opening a system user's ~/.forward for lookup, which runs unprivileged and cannot reach a
// home directory. lookup names only the user; the account, its home and the file are found
// and checked here, and the file is opened as the user (never with root's right to read
// anything), so a compromised lookup learns at most what that user's own .forward says.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/mail/accounts.hpp"
#include "common/util/fd.hpp"
#include "lookup/api.hpp"

namespace postern::smtpd {

// A .forward holds a few addresses; more than this is no .forward anyone wrote by hand.
constexpr size_t kMaxForwardFile = 64 * 1024;

struct ForwardAccount {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

struct ForwardOpened {
  msg::ForwardStatus status = msg::ForwardStatus::none;
  std::string reason;  // refused or failed: why
  UniqueFd fd;         // found: the file, read only
};

// home/.forward of the account: the home a directory (not a symbolic link) owned by the user
// or root and writable by no one else; the file regular, not a symbolic link, owned by the
// user or root, writable by no one else, at most kMaxForwardFile, and with one link unless
// the user owns it (a hard link to someone else's file is not theirs to point at). as_user:
// the home and the file are opened with the account's filesystem uid and gid (setfsuid), so
// a file the user may not read is not read for them.
ForwardOpened open_forward_file(const ForwardAccount& account, bool as_user);

// The whole answer to lookup's ForwardOpen: the name must be one a mailbox can have, the
// account must exist and be a mailbox of a "users: system" domain (the account rule with that
// domain's min_uid: never root, a system account or the daemon's own), its home comes from
// the account database. privileged: the parent runs as root (otherwise only its own account's
// file is opened).
ForwardOpened open_forward_for(std::string_view user, const std::vector<lookup::Domain>& domains,
                               const accounts::Policy& daemon_accounts, bool privileged);

}  // namespace postern::smtpd
