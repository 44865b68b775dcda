// A system user's ~/.forward opened for lookup; see forward_file.hpp.
#include "smtpd/forward_file.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace postern::smtpd {
namespace {

// The filesystem identity of this thread as the account's while it lives. Leaving uid 0 drops
// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the effective set (capabilities(7)), so the
// kernel checks the user's own rights; root's supplementary groups stay, which matters only
// for files of group root, and those are root's anyway.
class FsIdentity {
 public:
  FsIdentity(uid_t uid, gid_t gid)
      : old_uid_(geteuid()), old_gid_(getegid()), switched_(switch_to(uid, gid)) {}
  FsIdentity(const FsIdentity&) = delete;
  FsIdentity& operator=(const FsIdentity&) = delete;
  ~FsIdentity() {
    setfsuid(old_uid_);
    setfsgid(old_gid_);
  }
  bool switched() const { return switched_; }

 private:
  static bool switch_to(uid_t uid, gid_t gid) {
    setfsgid(gid);
    setfsuid(uid);
    // setfsuid reports no error: asking again (with an invalid id) tells what holds.
    return static_cast<uid_t>(setfsuid(static_cast<uid_t>(-1))) == uid &&
           static_cast<gid_t>(setfsgid(static_cast<gid_t>(-1))) == gid;
  }

  uid_t old_uid_;
  gid_t old_gid_;
  bool switched_;
};

ForwardOpened forward_refused(std::string reason) {
  return {.status = msg::ForwardStatus::refused, .reason = std::move(reason), .fd = {}};
}

ForwardOpened forward_failed(const std::string& what, int error) {
  return {
      .status = msg::ForwardStatus::failed, .reason = what + ": " + std::strerror(error), .fd = {}};
}

// What is wrong with a home or a .forward owned by st_uid, or "" when nothing is.
std::string ownership_fault(const struct stat& st, uid_t user) {
  if (st.st_uid != user && st.st_uid != 0)
    return "owned by uid " + std::to_string(st.st_uid) + ", neither the user nor root";
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) return "writable by its group or by everyone";
  return "";
}

ForwardOpened open_checked(const ForwardAccount& account) {
  const std::string& home = account.home;
  const std::string path = home + "/.forward";
  UniqueFd dir(open(home.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) {
    const int error = errno;
    if (error == ENOENT) return {};
    if (error == ELOOP || error == ENOTDIR)
      return forward_refused("home " + home + " is not a directory (or a symbolic link)");
    if (error == EACCES) return forward_refused("home " + home + " is not the user's to search");
    return forward_failed(home, error);
  }
  struct stat st {};
  if (fstat(dir.get(), &st) != 0) return forward_failed(home, errno);
  if (std::string fault = ownership_fault(st, account.uid); !fault.empty())
    return forward_refused("home " + home + " is " + fault);
  UniqueFd file(openat(dir.get(), ".forward", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!file) {
    const int error = errno;
    if (error == ENOENT) return {};
    if (error == ELOOP) return forward_refused(path + " is a symbolic link");
    if (error == EACCES) return forward_refused(path + " is not readable by the user");
    return forward_failed(path, error);
  }
  if (fstat(file.get(), &st) != 0) return forward_failed(path, errno);
  if (!S_ISREG(st.st_mode)) return forward_refused(path + " is not a regular file");
  if (std::string fault = ownership_fault(st, account.uid); !fault.empty())
    return forward_refused(path + " is " + fault);
  if (st.st_nlink != 1 && st.st_uid != account.uid)
    return forward_refused(path + " is a hard link to a file the user does not own");
  if (st.st_size > static_cast<off_t>(kMaxForwardFile))
    return forward_refused(path + " is larger than " + std::to_string(kMaxForwardFile) + " bytes");
  return {.status = msg::ForwardStatus::found, .reason = "", .fd = std::move(file)};
}

// A name an account of a mailbox can have: no path, no control character, no option.
bool plain_user_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "." || name == ".." || name.front() == '-')
    return false;
  return std::none_of(name.begin(), name.end(),
                      [](unsigned char c) { return c < 0x21 || c == 0x7f || c == '/'; });
}

}  // namespace

ForwardOpened open_forward_file(const ForwardAccount& account, bool as_user) {
  if (account.home.empty() || account.home.front() != '/')
    return forward_refused("home '" + account.home + "' is not an absolute path");
  if (!as_user) return open_checked(account);
  FsIdentity identity(account.uid, account.gid);
  if (!identity.switched()) return forward_failed("setfsuid", EPERM);
  return open_checked(account);
}

ForwardOpened open_forward_for(std::string_view user, const std::vector<lookup::Domain>& domains,
                               const accounts::Policy& daemon_accounts, bool privileged) {
  if (!plain_user_name(user)) return forward_refused("not a user name");
  const std::string name(user);
  errno = 0;
  const passwd* pw = getpwnam(name.c_str());
  if (pw == nullptr)
    return errno == 0 || errno == ENOENT ? forward_refused("no such system user")
                                         : forward_failed("getpwnam", errno);
  // The account of a mailbox in some domain of system users, by that domain's min_uid.
  std::string why = "no domain has users: system";
  const bool mailbox = std::any_of(domains.begin(), domains.end(), [&](const lookup::Domain& d) {
    if (!d.system_users) return false;
    accounts::Policy policy = daemon_accounts;
    policy.min_uid = d.min_uid;
    const auto refusal =
        accounts::refusal({.name = name, .uid = pw->pw_uid, .gid = pw->pw_gid}, policy);
    if (refusal) why = *refusal;
    return !refusal;
  });
  if (!mailbox) return forward_refused(why);
  ForwardAccount account{.name = name,
                         .uid = pw->pw_uid,
                         .gid = pw->pw_gid,
                         .home = pw->pw_dir != nullptr ? pw->pw_dir : ""};
  if (!privileged && account.uid != getuid())
    return forward_refused("smtpd is not running as root, so it reads only its own account's");
  return open_forward_file(account, privileged);
}

}  // namespace postern::smtpd
