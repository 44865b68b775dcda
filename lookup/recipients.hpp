// Who may be a recipient here: local domains take mail for themselves, anything else is
// relaying, which only authenticated clients may do. Input is an address smtp parsed from a
// stranger's RCPT command.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/messages.hpp"

namespace postern::lookup {

class RecipientPolicy {
 public:
  void set_local_domains(const std::vector<config::Domain>& domains);
  msg::RcptDecision decide(const msg::RcptCheck& check) const;

 private:
  // Domain -> its users when it has a list (lower-case local parts), nullopt: any.
  std::map<std::string, std::optional<std::set<std::string>>, std::less<>> local_domains_;
};

}  // namespace postern::lookup
