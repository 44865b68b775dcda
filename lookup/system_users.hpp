// The host's accounts, for domains with "users: system": getpwnam behind a cache, since NSS
// may be a network directory (LDAP, SSSD) that takes milliseconds per question, and a RCPT
// must not. Answers, "no such user" included, are kept for kLifetime; the least recently used
// go when the cache is full. A failing account database is never cached: its questions are
// asked again at the next RCPT.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "lookup/recent_keys.hpp"

namespace postern::lookup {

struct Account {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

class SystemUsers {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kLifetime{60};

  enum class Found { yes, no, unknown };  // unknown: the account database failed
  struct Answer {
    Found found = Found::no;
    Account account;    // when yes
    std::string error;  // when unknown
  };

  explicit SystemUsers(size_t max_entries = 10000);
  Answer find(const std::string& name, Clock::time_point now = Clock::now());
  // After a reload: accounts may have changed with the configuration.
  void clear() { cache_.clear(); }

  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  size_t size() const { return cache_.size(); }

 private:
  struct Cached {
    Clock::time_point fetched;
    std::optional<Account> account;
  };

  RecentKeys<Cached> cache_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace postern::lookup
