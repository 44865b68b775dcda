// What the parent prepares on the host before any child starts: the system users' ids, the
// spool and jail directories, the lock that keeps a second daemon off the spool, the pid
// file, and the control socket. Runs as root in production and as any user in development.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "smtpd/config.hpp"

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
Result<Identities> resolve_identities(const Config& config);

// Never changes the owner of a directory that exists. Creates what is missing of the spool
// (the spool itself the queue user's, 0711, with the offline area in it, the parent's, 1733; an
// existing spool must be the queue user's already)
// and of each virtual users' mailbox root (a maildir or mbox template's part before its first
// %-segment; the root the virtual user's, 0700, and an existing one the virtual user cannot
// write to is logged as a warning); directories above them are made root's, 0755. Checks the
// jail directory (root-owned, writable by nobody else) when privileged.
Status prepare_directories(const Config& config, const Identities& ids);

// Where the pid file lives when the configuration names no run_dir and smtpd runs as root.
constexpr const char* kDefaultRunDir = "/run/postern";

// What prepare_directories and the pid file's directory would refuse, found without making or
// changing anything (smtpd -n, and before a start or reload): each problem with the
// configuration key it comes from ("spool", "empty_dir", "run_dir").
struct HostProblem {
  std::string key;
  std::string message;
};
std::vector<HostProblem> check_directories(const Config& config, const Identities& ids);

// One daemon per spool (a lock on the spool directory itself, where the queue user can plant
// nothing that the parent would open), and the parent's pid file in the run directory:
// created 0755 if missing, refused unless it is a directory owned by the daemon's user
// (root) that no one else may write; the pid file is written only once it is known to be a
// regular file of that user with one link (never a planted symlink or a hard link to another
// file). Without root the run directory defaults to the spool, owned by the same user.
class PidLock {
 public:
  static Result<PidLock> acquire(const Config& config, const Identities& ids);
  // Rewrites the pid (after daemonizing, the pid has changed).
  Status write_pid();
  void remove();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
  UniqueFd spool_;
};

// A listening unix socket for smtpctl: refuses to take over a live daemon's socket, replaces a
// stale one, mode 0600 (0660 with the configured group), owned by root.
Result<UniqueFd> bind_control_socket(const Config& config, const Identities& ids);
// The socket of the views control.public opens to every local user, beside the control
// socket (msg::public_socket_path), mode 0666, owned by root. Not open (and a stale file
// removed) when the configuration opens none.
Result<UniqueFd> bind_public_socket(const Config& config, const Identities& ids);

}  // namespace postern::smtpd
