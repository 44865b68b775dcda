// Which host accounts mail may be delivered as: one rule, asked by lookup when a "users:
// system" domain names an account (at RCPT and at delivery) and again by the root parent
// before it starts a delivery helper as that account. Never looks anything up itself: the
// caller brings the account (getpwnam) and the daemon's own users.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace postern::accounts {

// As login.defs' UID_MIN: below it are system accounts (bin, daemon, www-data...).
constexpr uint32_t kDefaultMinUid = 1000;
// The kernel's overflow id (nobody, nogroup): what unmapped ids show as, shared by whatever
// the system leaves ownerless. Never a recipient, and so free to serve as the group a helper
// is started with (smtpd/helpers.cpp).
constexpr uint32_t kOverflowId = 65534;

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

struct Policy {
  uint32_t min_uid = kDefaultMinUid;
  // The daemon's own accounts (config user, queue_user, virtual_user): by name, and by uid
  // when the parent knows them (it runs as root), so that another name for the same uid is
  // refused too.
  std::vector<std::string> daemon_users;
  std::vector<uint32_t> daemon_uids;
};

// Why mail may not be delivered as this account, or nullopt when it may.
std::optional<std::string> refusal(const Account& account, const Policy& policy);

}  // namespace postern::accounts
