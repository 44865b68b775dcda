// Who may be a recipient here: local domains take mail for the addresses their routes know,
// relay domains take any address from anyone, and anything else is relaying, which only a
// session lookup trusts to relay may do. Input is an address smtp parsed from a stranger's
// RCPT command.
#pragma once

#include "common/ipc/messages.hpp"
#include "lookup/api.hpp"
#include "lookup/local_routes.hpp"
#include "lookup/relay_policy.hpp"
#include "smtp/api.hpp"

namespace postern::lookup {

class RecipientPolicy {
 public:
  explicit RecipientPolicy(const LocalRouter& router, const RelayDomains* relay_domains = nullptr)
      : router_(router), relay_domains_(relay_domains) {}
  // check.authenticated here means "may relay anywhere", as lookup established it from its
  // own record of the session (lookup_process.cpp), never smtp's flag. A domain both local
  // and a relay domain is refused by the configuration; local would win.
  msg::RcptDecision decide(const msg::RcptCheck& check) const;

 private:
  const LocalRouter& router_;
  const RelayDomains* relay_domains_;
};

}  // namespace postern::lookup
