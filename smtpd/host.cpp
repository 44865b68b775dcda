// Host preparation for the parent; see host.hpp.
#include "smtpd/host.hpp"
#include "common/util/io.hpp"
#include "common/util/log.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <utility>

namespace postern::smtpd {
namespace {

Status make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return make_error("cannot create " + path + ": " + ec.message());
  return ok_status();
}

// Whether uid/gid (mda drops its supplementary groups) may create entries in a directory.
bool may_create_in(const struct stat& st, uid_t uid, gid_t gid) {
  constexpr mode_t kUser = S_IWUSR | S_IXUSR;
  constexpr mode_t kGroup = S_IWGRP | S_IXGRP;
  constexpr mode_t kOther = S_IWOTH | S_IXOTH;
  if (uid == 0) return true;
  if (st.st_uid == uid) return (st.st_mode & kUser) == kUser;
  if (st.st_gid == gid) return (st.st_mode & kGroup) == kGroup;
  return (st.st_mode & kOther) == kOther;
}

// The fixed part of a virtual users' mailbox template, before its first %-segment (the
// configuration guarantees one): /var/mail for /var/mail/%u/Maildir.
std::string mailbox_root(const std::string& templ) {
  std::string root = templ.substr(0, templ.find("/%"));
  while (!root.empty() && root.back() == '/') root.pop_back();
  return root.empty() ? "/" : root;
}

// A directory prepare_directory opened, and whether it made it.
struct PreparedDirectory {
  UniqueFd fd;
  bool created = false;
};

// Opens the directory at an absolute path, creating the components that are missing and
// leaving every existing one as it is, links included (/var/mail is often one to
// /var/spool/mail): an existing directory is never chowned or chmodded here. Made here: the
// directories above path root's, 0755 (a path, nothing more), path itself with mode and, when
// given, owner. Each one made is opened again without following links and checked to be the
// one just made, so that a writer of its parent cannot swap in a link for the chown to follow.
Result<PreparedDirectory> prepare_directory(const std::string& path, mode_t mode,
                                            std::optional<std::pair<uid_t, gid_t>> owner) {
  if (path.empty() || path[0] != '/') return make_error(path + " is not an absolute path");
  PreparedDirectory dir{.fd = UniqueFd(open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
                        .created = false};
  if (!dir.fd) return errno_error("open /");
  std::string walked;
  size_t start = 1;
  while (start < path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string name = path.substr(start, end - start);
    start = end + 1;
    if (name.empty() || name == ".") continue;
    walked += "/" + name;
    const bool last = path.find_first_not_of('/', start) == std::string::npos;
    UniqueFd next(openat(dir.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    dir.created = false;
    if (!next) {
      if (errno != ENOENT) return errno_error("cannot open " + walked);
      if (mkdirat(dir.fd.get(), name.c_str(), 0700) != 0 && errno != EEXIST)
        return errno_error("cannot create " + walked);
      next.reset(
          openat(dir.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      struct stat st {};
      if (!next || fstat(next.get(), &st) != 0) return errno_error("cannot open " + walked);
      if (st.st_uid != geteuid()) return make_error(walked + " changed hands while it was created");
      if (fchmod(next.get(), last ? mode : 0755) != 0) return errno_error("chmod " + walked);
      if (last && owner && fchown(next.get(), owner->first, owner->second) != 0)
        return errno_error("chown " + walked);
      dir.created = true;
    }
    dir.fd = std::move(next);
  }
  return dir;
}

// A virtual users' mailbox root is the virtual user's (0700) when made here, for mda makes
// each user's folder in it. An existing one the virtual user cannot write to is worth a
// warning, not a refusal to start (the administrator may be about to fix it, and other
// domains still work).
Status prepare_mailbox_root(const std::string& root, const Identities& ids) {
  Result<PreparedDirectory> dir = prepare_directory(
      root, 0700,
      ids.privileged ? std::optional(std::pair(ids.virtual_uid, ids.virtual_gid)) : std::nullopt);
  if (!dir.ok()) return make_error("mailbox root: " + dir.error().message);
  struct stat st {};
  if (fstat(dir.value().fd.get(), &st) != 0) return errno_error("stat " + root);
  if (!dir.value().created && !may_create_in(st, ids.virtual_uid, ids.virtual_gid))
    log::warn(
        "mailbox root %s (owner %u, group %u, mode %04o) is not writable by the virtual "
        "user (uid %u, gid %u): deliveries of new users will be deferred until it is",
        root.c_str(), static_cast<unsigned>(st.st_uid), static_cast<unsigned>(st.st_gid),
        static_cast<unsigned>(st.st_mode & 07777), static_cast<unsigned>(ids.virtual_uid),
        static_cast<unsigned>(ids.virtual_gid));
  return ok_status();
}

// An existing spool must be the queue user's already.
Status spool_owned(const std::string& spool, const struct stat& st, const Identities& ids) {
  if (st.st_uid == ids.queue_uid) return ok_status();
  return make_error("spool " + spool + " exists and belongs to uid " + std::to_string(st.st_uid) +
                    ", not to the queue user (uid " + std::to_string(ids.queue_uid) +
                    "); smtpd does not take over an existing directory: chown it or name "
                    "another spool");
}

// The jail of smtp, mta and control: an attacker there must find nothing and write nothing.
Status jail_safe(const std::string& dir, const struct stat& st) {
  if (S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0)
    return ok_status();
  return make_error("empty_dir " + dir +
                    " must be a directory owned by root and writable by no one else");
}

// The offline area (smtpd/offline.hpp): the parent's, 1733, so that any local user may add a
// file of their own and no one else may list, read or remove it. The queue user owns the spool
// around it and could put something else in its place: that is refused, never adopted.
Status prepare_offline_area(int spool_fd, const std::string& spool) {
  const std::string path = spool + "/offline";
  if (mkdirat(spool_fd, "offline", 0700) != 0 && errno != EEXIST)
    return errno_error("cannot create " + path);
  const UniqueFd dir(openat(spool_fd, "offline", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (!dir || fstat(dir.get(), &st) != 0) return errno_error("cannot open " + path);
  if (st.st_uid != geteuid())
    return make_error("offline area " + path + " belongs to uid " + std::to_string(st.st_uid) +
                      ", not to smtpd's; remove it and smtpd makes it again");
  if (fchmod(dir.get(), 01733) != 0) return errno_error("chmod " + path);
  return ok_status();
}

// The spool is made for the queue user, 0711: others may pass through it to the offline area
// and nowhere else (the queue's areas are 0700). An existing one must already be the queue
// user's (it is then closed to others again, as it is the daemon's own): a mistaken
// "spool: /var/mail" must stop the start, not hand that directory over.
Status prepare_spool(const std::string& spool, const Identities& ids) {
  Result<PreparedDirectory> dir = prepare_directory(
      spool, 0711,
      ids.privileged ? std::optional(std::pair(ids.queue_uid, ids.queue_gid)) : std::nullopt);
  if (!dir.ok()) return make_error("spool: " + dir.error().message);
  const int fd = dir.value().fd.get();
  if (!dir.value().created) {
    struct stat st {};
    if (fstat(fd, &st) != 0) return errno_error("stat " + spool);
    if (Status owned = spool_owned(spool, st, ids); !owned.ok()) return owned;
    if (fchmod(fd, 0711) != 0) return errno_error("chmod " + spool);
  }
  return prepare_offline_area(fd, spool);
}

}  // namespace

Result<Identities> resolve_identities(const Config& config) {
  Identities ids;
  ids.privileged = geteuid() == 0;
  if (!ids.privileged) {
    ids.smtpd_uid = ids.queue_uid = ids.virtual_uid = getuid();
    ids.smtpd_gid = ids.queue_gid = ids.virtual_gid = getgid();
    return ids;
  }
  std::string missing;
  const std::string& virtual_user = config.virtual_user ? *config.virtual_user : config.user;
  struct Account {
    const std::string& name;
    uid_t& uid;
    gid_t& gid;
  };
  for (const Account& a : {Account{config.user, ids.smtpd_uid, ids.smtpd_gid},
                           Account{config.queue_user, ids.queue_uid, ids.queue_gid},
                           Account{virtual_user, ids.virtual_uid, ids.virtual_gid}}) {
    const passwd* pw = getpwnam(a.name.c_str());
    if (pw == nullptr) {
      if (missing.find(a.name) == std::string::npos)
        missing += (missing.empty() ? "" : ", ") + a.name;
      continue;
    }
    if (pw->pw_uid == 0 || pw->pw_gid == 0)
      return make_error("system user " + a.name + " must not have uid or gid 0");
    a.uid = pw->pw_uid;
    a.gid = pw->pw_gid;
  }
  if (!missing.empty())
    return make_error("missing system user(s): " + missing +
                      " (create them, e.g. with systemd-sysusers and Postern's sysusers.d "
                      "file, or useradd --system)");
  return ids;
}

Status prepare_directories(const Config& config, const Identities& ids) {
  if (Status st = prepare_spool(config.spool_dir, ids); !st.ok()) return st;

  // Virtual users' mailboxes live below the fixed part of their template; system users' mail
  // goes to their homes or to folders the system already has.
  for (const auto& domain : config.lookup.domains) {
    const std::optional<std::string>& templ = domain.maildir ? domain.maildir : domain.mbox;
    if (!templ || domain.system_users) continue;
    if (Status st = prepare_mailbox_root(mailbox_root(*templ), ids); !st.ok()) return st;
  }

  if (!ids.privileged) return ok_status();
  if (mkdir(config.empty_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return errno_error("cannot create " + config.empty_dir);
  struct stat st {};
  if (stat(config.empty_dir.c_str(), &st) != 0) return errno_error("stat " + config.empty_dir);
  return jail_safe(config.empty_dir, st);
}

namespace {

// The pid a running daemon wrote, for the message that names it; nothing is followed.
std::string recorded_pid(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  char buf[32] = {};
  const ssize_t n = fd ? pread(fd.get(), buf, sizeof buf - 1, 0) : -1;
  std::string pid = n > 0 ? std::string(buf, strnlen(buf, sizeof buf)) : "";
  pid = pid.substr(0, pid.find('\n'));
  const bool digits = !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos;
  return digits ? pid : "unknown";
}

Status run_dir_safe(const std::string& dir, const struct stat& st) {
  if (S_ISDIR(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0)
    return ok_status();
  return make_error("run_dir " + dir + " must be a directory owned by " +
                    (geteuid() == 0 ? std::string("root") : "uid " + std::to_string(geteuid())) +
                    " and writable by no one else");
}

Status check_run_dir(const std::string& dir) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return errno_error("stat " + dir);
    if (Status made = make_dirs(dir); !made.ok()) return made;
    if (chmod(dir.c_str(), 0755) != 0) return errno_error("chmod " + dir);
    if (lstat(dir.c_str(), &st) != 0) return errno_error("stat " + dir);
  }
  return run_dir_safe(dir, st);
}

std::string run_dir_of(const Config& config, const Identities& ids) {
  return config.run_dir.value_or(ids.privileged ? kDefaultRunDir : config.spool_dir);
}

// A directory that is missing can be made when its nearest existing ancestor is a directory
// this process may write to.
Status creatable(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  for (;;) {
    struct stat st {};
    if (stat(dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        return make_error("cannot create " + path + ": " + dir.string() + " is not a directory");
      if (access(dir.c_str(), W_OK | X_OK) != 0)
        return errno_error("cannot create " + path + " in " + dir.string());
      return ok_status();
    }
    if (errno != ENOENT || !dir.has_parent_path() || dir == dir.parent_path())
      return errno_error("cannot create " + path + ": stat " + dir.string());
    dir = dir.parent_path();
  }
}

// The rule for a directory that exists, or that it can be made. follow: as the start opens
// it (the spool and the jail may be links; the run directory may not).
Status existing_or_creatable(const std::string& path, bool follow,
                             const std::function<Status(const struct stat&)>& rule) {
  struct stat st {};
  if ((follow ? stat(path.c_str(), &st) : lstat(path.c_str(), &st)) == 0) return rule(st);
  if (errno != ENOENT) return errno_error("stat " + path);
  return creatable(path);
}

}  // namespace

std::vector<HostProblem> check_directories(const Config& config, const Identities& ids) {
  std::vector<HostProblem> problems;
  auto check = [&](const char* key, const std::string& path, bool follow,
                   const std::function<Status(const struct stat&)>& rule) {
    if (Status st = existing_or_creatable(path, follow, rule); !st.ok())
      problems.push_back({key, st.error().message});
  };
  check("spool", config.spool_dir, true, [&](const struct stat& st) -> Status {
    if (!S_ISDIR(st.st_mode))
      return make_error("spool " + config.spool_dir + " is not a directory");
    return spool_owned(config.spool_dir, st, ids);
  });
  if (ids.privileged)
    check("empty_dir", config.empty_dir, true,
          [&](const struct stat& st) { return jail_safe(config.empty_dir, st); });
  const std::string run_dir = run_dir_of(config, ids);
  check("run_dir", run_dir, false,
        [&](const struct stat& st) { return run_dir_safe(run_dir, st); });
  return problems;
}

Result<PidLock> PidLock::acquire(const Config& config, const Identities& ids) {
  PidLock lock;
  const std::string run_dir = run_dir_of(config, ids);
  lock.path_ = run_dir + "/smtpd.pid";
  lock.spool_.reset(open(config.spool_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock.spool_) return errno_error("cannot open " + config.spool_dir);
  if (flock(lock.spool_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return errno_error("cannot lock " + config.spool_dir);
    return make_error("another smtpd (pid " + recorded_pid(lock.path_) + ") is running on spool " +
                      config.spool_dir);
  }
  if (Status st = check_run_dir(run_dir); !st.ok()) return st.error();
  // O_NOFOLLOW: a symlink is refused (ELOOP); fstat: whatever was opened must be our own
  // regular file with one link before it is truncated and written.
  lock.fd_.reset(open(lock.path_.c_str(),
                      O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0644));
  if (!lock.fd_) return errno_error("cannot open pid file " + lock.path_);
  struct stat st {};
  if (fstat(lock.fd_.get(), &st) != 0) return errno_error("stat " + lock.path_);
  if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1)
    return make_error("pid file " + lock.path_ +
                      " is not a regular file of this user with one link; refusing to write it");
  if (flock(lock.fd_.get(), LOCK_EX | LOCK_NB) != 0)
    return make_error("another smtpd (pid " + recorded_pid(lock.path_) + ") uses the pid file " +
                      lock.path_);
  if (Status written = lock.write_pid(); !written.ok()) return written.error();
  return lock;
}

Status PidLock::write_pid() {
  const std::string text = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_.get(), 0) != 0 ||
      pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    return errno_error("cannot write " + path_);
  return ok_status();
}

void PidLock::remove() {
  if (fd_) unlink(path_.c_str());
  fd_.reset();
}

namespace {

Result<UniqueFd> bind_unix_socket(const std::string& path, uid_t owner, gid_t group, mode_t mode) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (path.size() >= sizeof sun.sun_path)
    return make_error("control socket path too long: " + path);
  std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
  const std::string dir = std::filesystem::path(path).parent_path();
  if (Status st = make_dirs(dir); !st.ok()) return st.error();

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("control socket");
  // A socket file that still answers belongs to a running daemon: never steal it.
  {
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && connect(probe.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0)
      return make_error("control socket " + path + " is in use by a running smtpd");
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error("cannot remove " + path);
  // Bound with no access at all; opened to its readers only once owner and group are right.
  const mode_t old_umask = umask(0177);
  const int rc = bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun);
  umask(old_umask);
  if (rc != 0) return errno_error("cannot bind control socket " + path);
  if (chown(path.c_str(), owner, group) != 0) return errno_error("chown " + path);
  if (chmod(path.c_str(), mode) != 0) return errno_error("chmod " + path);
  if (listen(fd.get(), 16) != 0) return errno_error("listen on " + path);
  return fd;
}

}  // namespace

Result<UniqueFd> bind_control_socket(const Config& config, const Identities& ids) {
  gid_t group = ids.privileged ? 0 : getgid();
  if (config.control.group) {
    const struct group* gr = getgrnam(config.control.group->c_str());
    if (gr == nullptr)
      return make_error("control group " + *config.control.group + " does not exist");
    group = gr->gr_gid;
  }
  return bind_unix_socket(config.control.socket_path, ids.privileged ? 0 : getuid(), group,
                          config.control.group ? 0660 : 0600);
}

Result<UniqueFd> bind_public_socket(const Config& config, const Identities& ids) {
  const std::string path = msg::public_socket_path(config.control.socket_path);
  if (config.control.public_views.empty()) {
    // A file left by a start that opened views; nothing may answer there now.
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
    return UniqueFd();
  }
  return bind_unix_socket(path, ids.privileged ? 0 : getuid(), ids.privileged ? 0 : getgid(), 0666);
}

}  // namespace postern::smtpd
