// A bounded map from keys that strangers choose (a client address, a user name) to what lookup
// remembers about them: AUTH failure counters, connection rates, cached accounts. Entries are
// kept in the order they were last used; an entry idle for longer than the lifetime is gone,
// and when the map is full the least recently used entry makes room. Every operation is O(1)
// amortised and memory is capped by max_keys, whatever the keys. Time comes from the caller.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <iterator>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::lookup {

template <typename Value>
class RecentKeys {
 public:
  using Clock = std::chrono::steady_clock;

  // Keys longer than this share an entry with every key of the same prefix: a user name comes
  // from a stranger's AUTH line and can be kilobytes long, and no real name is that long.
  static constexpr size_t kMaxKeyLength = 256;

  RecentKeys(size_t max_keys, Clock::duration lifetime)
      : max_keys_(std::max<size_t>(max_keys, 1)), lifetime_(lifetime) {}

  // The value of key, or nullptr when it is absent or has been idle for the lifetime (it is
  // then removed). Does not count as a use.
  Value* find(std::string_view key, Clock::time_point now) {
    forget_idle(now);
    const auto found = index_.find(bounded(key));
    if (found == index_.end()) return nullptr;
    if (idle(*found->second, now)) {
      erase(found->second);
      return nullptr;
    }
    return &found->second->value;
  }

  // The value of key, created (value-initialised) when absent or idle, marked used at now.
  Value& use(std::string_view key, Clock::time_point now) {
    forget_idle(now);
    key = bounded(key);
    auto found = index_.find(key);
    if (found != index_.end() && idle(*found->second, now)) {
      erase(found->second);
      found = index_.end();
    }
    if (found == index_.end()) {
      // Full: the least recently used entry goes. Fresh keys sprayed by an attacker can push
      // out old entries, but never make the map grow.
      if (index_.size() >= max_keys_) erase(order_.begin());
      order_.push_back(Entry{std::string(key), now, Value{}});
      found = index_.emplace(std::string_view(order_.back().key), std::prev(order_.end())).first;
    }
    const typename Order::iterator it = found->second;
    it->used = now;
    order_.splice(order_.end(), order_, it);
    return it->value;
  }

  void erase(std::string_view key) {
    const auto found = index_.find(bounded(key));
    if (found != index_.end()) erase(found->second);
  }
  void clear() {
    index_.clear();
    order_.clear();
  }
  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::string key;
    Clock::time_point used;
    Value value;
  };
  // Least recently used first: the front is both the next to expire and the one to evict.
  using Order = std::list<Entry>;

  // Idle entries removed per call: keeps each call cheap, and since a call adds at most one
  // entry, the sweep still keeps up.
  static constexpr int kSweepPerCall = 4;

  static std::string_view bounded(std::string_view key) { return key.substr(0, kMaxKeyLength); }
  bool idle(const Entry& e, Clock::time_point now) const { return now - e.used >= lifetime_; }
  void forget_idle(Clock::time_point now) {
    for (int i = 0; i < kSweepPerCall && !order_.empty() && idle(order_.front(), now); ++i)
      erase(order_.begin());
  }
  void erase(typename Order::iterator it) {
    index_.erase(std::string_view(it->key));
    order_.erase(it);
  }

  size_t max_keys_;
  Clock::duration lifetime_;
  Order order_;
  // Keys are views into the list's nodes, which never move.
  std::unordered_map<std::string_view, typename Order::iterator> index_;
};

}  // namespace postern::lookup
