// Recipient policy; see recipients.hpp.
#include "lookup/recipients.hpp"

namespace postern::lookup {

void RecipientPolicy::set_local_domains(const std::vector<config::Domain>& domains) {
  local_domains_.clear();
  for (const auto& d : domains) {
    auto& users = local_domains_[d.name];
    if (d.users) users.emplace(d.users->begin(), d.users->end());
  }
}

msg::RcptDecision RecipientPolicy::decide(const msg::RcptCheck& check) const {
  // <postmaster> without a domain is always ours (RFC 5321 4.5.1).
  if (check.domain.empty()) return msg::RcptDecision::local;
  const auto domain = check.literal ? local_domains_.end() : local_domains_.find(check.domain);
  if (domain != local_domains_.end()) {
    // Postern never routes on "%", "!" or an "@" inside a quoted local part (the percent
    // hack, bang paths): no local user has such a name.
    if (check.local_part.find_first_of("%!@") != std::string::npos)
      return msg::RcptDecision::unknown_user;
    if (!domain->second) return msg::RcptDecision::local;
    std::string user = check.local_part;
    for (char& c : user)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    // postmaster@ every local domain is always there (RFC 5321 4.5.1).
    if (user == "postmaster" || domain->second->contains(user)) return msg::RcptDecision::local;
    return msg::RcptDecision::unknown_user;
  }
  return check.authenticated ? msg::RcptDecision::relay : msg::RcptDecision::relay_denied;
}

}  // namespace postern::lookup
