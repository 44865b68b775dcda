// Recipient policy; see recipients.hpp.
#include "lookup/recipients.hpp"

namespace postern::lookup {

void RecipientPolicy::set_local_domains(const std::vector<std::string>& domains) {
  local_domains_ = std::set<std::string>(domains.begin(), domains.end());
}

msg::RcptDecision RecipientPolicy::decide(const msg::RcptCheck& check) const {
  // <postmaster> without a domain is always ours (RFC 5321 4.5.1).
  if (check.domain.empty()) return msg::RcptDecision::local;
  const bool local = !check.literal && local_domains_.contains(check.domain);
  if (local) {
    // Postern never routes on "%", "!" or an "@" inside a quoted local part (the percent
    // hack, bang paths): no local user has such a name.
    if (check.local_part.find_first_of("%!@") != std::string::npos)
      return msg::RcptDecision::unknown_user;
    return msg::RcptDecision::local;
  }
  return check.authenticated ? msg::RcptDecision::relay : msg::RcptDecision::relay_denied;
}

}  // namespace postern::lookup
