// What the parent prepares on the host before any child starts: the system users' ids, the
// spool and jail directories, the lock that keeps a second daemon off the spool, and the
// control socket. Runs as root in production and as any user in development.
#pragma once

#include <sys/types.h>

#include <string>

#include "common/config.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"

namespace postern::smtpd {

struct Identities {
  bool privileged = false;  // started as root: children switch users and chroot
  uid_t smtpd_uid = 0;
  gid_t smtpd_gid = 0;
  uid_t queue_uid = 0;
  gid_t queue_gid = 0;
  uid_t virtual_uid = 0;  // mda's user: owns the virtual users' mailboxes
  gid_t virtual_gid = 0;
};

// Looks up the configured system users; a missing one is an error that names it.
Result<Identities> resolve_identities(const config::Config& config);

// Never changes the owner of a directory that exists. Creates what is missing of the spool
// (the spool itself the queue user's, 0700; an existing one must be the queue user's already)
// and of each virtual users' mailbox root (a maildir or mbox template's part before its first
// %-segment; the root the virtual user's, 0700, and an existing one the virtual user cannot
// write to is logged as a warning); directories above them are made root's, 0755. Checks the
// jail directory (root-owned, writable by nobody else) when privileged.
Status prepare_directories(const config::Config& config, const Identities& ids);

// The pid file in the spool, locked for the daemon's lifetime; a second daemon on the same
// spool finds it locked and is told which pid holds it.
class PidLock {
 public:
  static Result<PidLock> acquire(const std::string& spool_dir);
  // Rewrites the pid (after daemonizing, the pid has changed).
  Status write_pid();
  void remove();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
};

// A listening unix socket for smtpctl: refuses to take over a live daemon's socket, replaces a
// stale one, mode 0600 (0660 with the configured group), owned by root.
Result<UniqueFd> bind_control_socket(const config::Config& config, const Identities& ids);

}  // namespace postern::smtpd
