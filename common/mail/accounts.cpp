// The account rule; see accounts.hpp.
#include "common/mail/accounts.hpp"

#include <algorithm>

namespace postern::accounts {

std::optional<std::string> refusal(const Account& account, const Policy& policy) {
  if (account.uid == 0 || account.gid == 0 || account.name == "root")
    return "mail is never delivered as root or with group 0";
  if (account.uid == kOverflowId || account.gid == kOverflowId)
    return "mail is never delivered as nobody or nogroup";
  if (std::find(policy.daemon_users.begin(), policy.daemon_users.end(), account.name) !=
          policy.daemon_users.end() ||
      std::find(policy.daemon_uids.begin(), policy.daemon_uids.end(), account.uid) !=
          policy.daemon_uids.end())
    return "mail is never delivered as one of the daemon's own users";
  if (account.uid < policy.min_uid)
    return "uid " + std::to_string(account.uid) + " is below min_uid " +
           std::to_string(policy.min_uid) + " (a system account)";
  return std::nullopt;
}

}  // namespace postern::accounts
