// Recipient policy; see recipients.hpp.
#include "lookup/recipients.hpp"
#include "lookup/api.hpp"
#include "mda/api.hpp"
#include "smtp/api.hpp"

namespace postern::lookup {

msg::RcptDecision RecipientPolicy::decide(const msg::RcptCheck& check) const {
  // <postmaster> without a domain is always ours (RFC 5321 4.5.1).
  const bool local = check.domain.empty() || (!check.literal && router_.is_local(check.domain));
  if (!local) {
    const bool relay_domain =
        !check.literal && relay_domains_ != nullptr && relay_domains_->covers(check.domain);
    return check.authenticated || relay_domain ? msg::RcptDecision::relay
                                               : msg::RcptDecision::relay_denied;
  }
  // Postern never routes on "%", "!" or an "@" inside a quoted local part (the percent hack,
  // bang paths): no local user has such a name.
  if (check.local_part.find_first_of("%!@") != std::string::npos)
    return msg::RcptDecision::unknown_user;
  switch (router_.check(check.local_part, check.domain).status) {
    case msg::RouteStatus::ok:
      return msg::RcptDecision::local;
    case msg::RouteStatus::loop:
      return msg::RcptDecision::loop;
    case msg::RouteStatus::temporary:
      return msg::RcptDecision::temporary;
    case msg::RouteStatus::unknown_user:
    case msg::RouteStatus::failed:
      break;
  }
  return msg::RcptDecision::unknown_user;
}

}  // namespace postern::lookup
