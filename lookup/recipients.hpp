// Who may be a recipient here: local domains take mail for themselves, anything else is
// relaying, which only authenticated clients may do. Input is an address smtp parsed from a
// stranger's RCPT command.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "common/messages.hpp"

namespace postern::lookup {

class RecipientPolicy {
 public:
  void set_local_domains(const std::vector<std::string>& domains);
  msg::RcptDecision decide(const msg::RcptCheck& check) const;

 private:
  std::set<std::string> local_domains_;
};

}  // namespace postern::lookup
