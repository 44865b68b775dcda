// Failure counters for AUTH; see throttle.hpp. Input is whatever a client chose as a user name
// or connected from: every operation is O(1) amortised and memory is capped by max_keys.
// Never stores a password, only counts failures.
#include "lookup/throttle.hpp"

#include <algorithm>

namespace postern::lookup {
namespace {

// A user name comes from a stranger's AUTH line and can be kilobytes long. Longer keys share a
// counter with every key of the same prefix, which harms nobody with a real name.
constexpr size_t kMaxKeyLength = 256;
// Expired entries removed per call: keeps each call cheap, and since every call may add at
// most one entry, the sweep still keeps up.
constexpr int kSweepPerCall = 4;

std::string_view bounded(std::string_view key) {
  return key.substr(0, kMaxKeyLength);
}

}  // namespace

FailureThrottle::FailureThrottle(ThrottlePolicy policy, size_t max_keys)
    : policy_(policy), max_keys_(std::max<size_t>(max_keys, 1)) {}

bool FailureThrottle::expired(const Counter& counter,
                              std::chrono::steady_clock::time_point now) const {
  return now - counter.last_failure >= policy_.window;
}

void FailureThrottle::erase(Order::iterator it) {
  index_.erase(std::string_view(it->key));
  order_.erase(it);
}

void FailureThrottle::sweep(std::chrono::steady_clock::time_point now) {
  for (int i = 0; i < kSweepPerCall && !order_.empty() && expired(order_.front(), now); ++i)
    erase(order_.begin());
}

std::pair<ThrottleVerdict, std::chrono::milliseconds> FailureThrottle::check(
    std::string_view key, std::chrono::steady_clock::time_point now) {
  using std::chrono::milliseconds;
  sweep(now);
  const auto found = index_.find(bounded(key));
  if (found == index_.end()) return {ThrottleVerdict::allow, milliseconds{0}};
  const Counter& counter = *found->second;
  if (expired(counter, now)) {
    erase(found->second);
    return {ThrottleVerdict::allow, milliseconds{0}};
  }
  if (counter.failures >= policy_.block_after) {
    const auto left = policy_.window - (now - counter.last_failure);
    // Round up: "refused for 0 ms" would read as "try again now".
    return {ThrottleVerdict::refuse, std::chrono::ceil<milliseconds>(left)};
  }
  if (counter.failures < policy_.free_failures) return {ThrottleVerdict::allow, milliseconds{0}};

  // base_delay * 2^(failures - free_failures), capped; doubling stops at the cap, so neither
  // the loop nor the arithmetic can run away whatever the policy says.
  milliseconds delay = policy_.base_delay;
  for (uint32_t i = counter.failures - policy_.free_failures;
       i > 0 && delay > milliseconds{0} && delay < policy_.max_delay; --i)
    delay = delay > policy_.max_delay / 2 ? policy_.max_delay : delay * 2;
  delay = std::min(delay, policy_.max_delay);
  if (delay <= milliseconds{0}) return {ThrottleVerdict::allow, milliseconds{0}};
  return {ThrottleVerdict::delay, delay};
}

void FailureThrottle::record_failure(std::string_view key,
                                     std::chrono::steady_clock::time_point now) {
  sweep(now);
  key = bounded(key);
  auto found = index_.find(key);
  if (found != index_.end() && expired(*found->second, now)) {
    erase(found->second);
    found = index_.end();
  }
  if (found == index_.end()) {
    // Full: the entry that failed longest ago goes. An attacker spraying fresh keys can push
    // out old counters, but never make the table grow.
    if (index_.size() >= max_keys_) erase(order_.begin());
    order_.push_back(Counter{std::string(key), 0, now});
    found = index_.emplace(std::string_view(order_.back().key), std::prev(order_.end())).first;
  }
  const Order::iterator it = found->second;
  if (it->failures < UINT32_MAX) ++it->failures;
  it->last_failure = now;
  order_.splice(order_.end(), order_, it);
}

void FailureThrottle::record_success(std::string_view key) {
  const auto found = index_.find(bounded(key));
  if (found != index_.end()) erase(found->second);
}

}  // namespace postern::lookup
