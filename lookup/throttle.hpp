// Abuse limits kept per client address (and per user name for AUTH): failure counters that
// slow down password guessing, and connection rates that slow down, then refuse, a client
// that connects too often. Both forget a key that has been quiet for a while, stay bounded in
// memory whatever the clients send (see recent_keys.hpp), and take the time from the caller.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "lookup/recent_keys.hpp"

namespace postern::lookup {

using ThrottleClock = std::chrono::steady_clock;

enum class ThrottleVerdict { allow, delay, refuse };
using ThrottleAnswer = std::pair<ThrottleVerdict, std::chrono::milliseconds>;

struct ThrottlePolicy {
  uint32_t free_failures = 3;  // failures that cost nothing: everybody mistypes
  uint32_t block_after = 10;   // this many failures in a row and the key is refused
  // A key's failures are forgotten once none has been added for this long.
  std::chrono::seconds window{600};
  std::chrono::milliseconds base_delay{1000};  // the first delay; doubles with each failure
  std::chrono::milliseconds max_delay{16000};
};

class FailureThrottle {
 public:
  explicit FailureThrottle(ThrottlePolicy policy, size_t max_keys = 100000);

  // Before checking a password for key at time now: allow (zero), delay (how long to wait
  // before answering) or refuse (how long until the key's failures are forgotten).
  ThrottleAnswer check(std::string_view key, ThrottleClock::time_point now);
  void record_failure(std::string_view key, ThrottleClock::time_point now);
  // A right password clears the key.
  void record_success(std::string_view key);
  size_t size() const { return counters_.size(); }

 private:
  struct Counter {
    uint32_t failures = 0;
    ThrottleClock::time_point last_failure;
  };

  ThrottlePolicy policy_;
  RecentKeys<Counter> counters_;  // used = failed
};

// AUTH failures counted three ways, so that guessing slows the guesser and not the account's
// owner:
//  - per client address (client_key), over all user names: password spraying from one
//    address; delays, then refuses that address;
//  - per (address, user): guessing one account from one address; refuses sooner;
//  - per user name, over all addresses: guessing one account from many. This count only ever
//    delays (it holds every check for that name, right or wrong, so hanging up early tells
//    nothing): a refusal here would let anyone lock the owner out.
// Every delay is served before the password is checked. A right password clears only its
// (address, user) count: logging in to one's own account does not wipe the address's record.
class AuthThrottle {
 public:
  static constexpr ThrottlePolicy kAddressPolicy{.free_failures = 5,
                                                 .block_after = 30,
                                                 .window = std::chrono::seconds{600},
                                                 .base_delay = std::chrono::milliseconds{1000},
                                                 .max_delay = std::chrono::milliseconds{16000}};
  static constexpr ThrottlePolicy kPairPolicy{};
  static constexpr ThrottlePolicy kUserPolicy{.free_failures = 5,
                                              .block_after = UINT32_MAX,
                                              .window = std::chrono::seconds{600},
                                              .base_delay = std::chrono::milliseconds{1000},
                                              .max_delay = std::chrono::milliseconds{8000}};

  explicit AuthThrottle(size_t max_keys = 100000);

  // Before a password is checked: refuse (how long until the address or the pair is let in
  // again), or how long the check waits first (allow: at once).
  ThrottleAnswer before_check(std::string_view address, std::string_view user,
                              ThrottleClock::time_point now);
  // After: a right password is accepted (allow) unless failures sent in parallel have since
  // got the address or the pair refused; it clears the pair.
  ThrottleAnswer right_password(std::string_view address, std::string_view user,
                                ThrottleClock::time_point now);
  // A wrong one counts three times; refuse when the address or pair already was (attempts sent
  // in parallel learn nothing once their failures add up), otherwise allow.
  ThrottleAnswer wrong_password(std::string_view address, std::string_view user,
                                ThrottleClock::time_point now);

 private:
  static std::string pair_key(std::string_view address, std::string_view user);
  // The address's and the pair's verdict together: refuse if either does, else the longer wait.
  ThrottleAnswer address_verdict(std::string_view address, std::string_view user,
                                 ThrottleClock::time_point now);

  FailureThrottle by_address_;
  FailureThrottle by_pair_;
  FailureThrottle by_user_;
};

// Connections per minute from one client: a count that decays exponentially with a time
// constant of a minute, so a steady rate of N per minute settles at N and a burst of N at
// once reads N too. Up to per_minute a client is let in at once; above it the greeting waits,
// up to kMaxDelay at twice the rate; above twice the rate the client is refused. Refused
// connections count: a client hammering stays refused until it slows down.
class ConnectionRate {
 public:
  static constexpr std::chrono::milliseconds kMaxDelay{10000};

  // per_minute 0: no limit (nothing is counted).
  explicit ConnectionRate(uint32_t per_minute, size_t max_keys = 100000);
  void set_limit(uint32_t per_minute) { per_minute_ = per_minute; }

  // A connection from key at now: allow, delay (how long before the greeting) or refuse (how
  // long until the rate is back under the limit).
  ThrottleAnswer connect(std::string_view key, ThrottleClock::time_point now);
  // The rate counted for key, connections per minute (for tests and show stats).
  double rate(std::string_view key, ThrottleClock::time_point now);
  size_t size() const { return rates_.size(); }

 private:
  struct Level {
    double connections = 0;  // decayed count as of at
    ThrottleClock::time_point at;
  };

  uint32_t per_minute_;
  RecentKeys<Level> rates_;
};

// The key a client address is counted under: IPv4 addresses alone (IPv4-mapped ones too),
// IPv6 addresses by their /64, which one host usually has whole. Text that is no address is
// its own key.
std::string client_key(std::string_view address);

}  // namespace postern::lookup
