// Failure counters that slow down password guessing: one counter per key (a client address, or
// separately a user name), with a delay that grows after a few free failures and a refusal
// after many. Memory stays bounded whatever the clients send; time comes from the caller.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace postern::lookup {

struct ThrottlePolicy {
  uint32_t free_failures = 3;  // failures that cost nothing: everybody mistypes
  uint32_t block_after = 10;   // this many failures in a row and the key is refused
  // A key's failures are forgotten once none has been added for this long.
  std::chrono::seconds window{600};
  std::chrono::milliseconds base_delay{1000};  // the first delay; doubles with each failure
  std::chrono::milliseconds max_delay{16000};
};

enum class ThrottleVerdict { allow, delay, refuse };

class FailureThrottle {
 public:
  explicit FailureThrottle(ThrottlePolicy policy, size_t max_keys = 100000);

  // Before checking a password for key at time now: allow (zero), delay (how long to wait
  // before answering) or refuse (how long until the key's failures are forgotten).
  std::pair<ThrottleVerdict, std::chrono::milliseconds> check(
      std::string_view key, std::chrono::steady_clock::time_point now);
  void record_failure(std::string_view key, std::chrono::steady_clock::time_point now);
  // A right password clears the key.
  void record_success(std::string_view key);
  size_t size() const { return index_.size(); }

 private:
  struct Counter {
    std::string key;
    uint32_t failures = 0;
    std::chrono::steady_clock::time_point last_failure;
  };
  // Least recently failed first: the front is both the next to expire and the one to evict.
  using Order = std::list<Counter>;

  bool expired(const Counter& counter, std::chrono::steady_clock::time_point now) const;
  void sweep(std::chrono::steady_clock::time_point now);
  void erase(Order::iterator it);

  ThrottlePolicy policy_;
  size_t max_keys_;
  Order order_;
  // Keys are views into the list's nodes, which never move.
  std::unordered_map<std::string_view, Order::iterator> index_;
};

}  // namespace postern::lookup
