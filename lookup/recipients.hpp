// Who may be a recipient here: local domains take mail for the addresses their routes know,
// anything else is relaying, which only authenticated clients may do. Input is an address
// smtp parsed from a stranger's RCPT command.
#pragma once

#include "common/ipc/messages.hpp"
#include "lookup/api.hpp"
#include "lookup/local_routes.hpp"
#include "smtp/api.hpp"

namespace postern::lookup {

class RecipientPolicy {
 public:
  explicit RecipientPolicy(const LocalRouter& router) : router_(router) {}
  msg::RcptDecision decide(const msg::RcptCheck& check) const;

 private:
  const LocalRouter& router_;
};

}  // namespace postern::lookup
