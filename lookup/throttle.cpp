// Abuse limits; see throttle.hpp. Input is whatever a client chose as a user name or where it
// connected from. Never stores a password, only counts.
#include "lookup/throttle.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "common/util/inet.hpp"

namespace postern::lookup {
namespace {

using std::chrono::milliseconds;

// The time constant of a connection rate: a minute, so that the level reads per minute.
constexpr std::chrono::seconds kRateTimeConstant{60};
// A rate idle this long has decayed to nothing (e^-10 of what it was) and is forgotten.
constexpr std::chrono::seconds kRateLifetime{600};

}  // namespace

FailureThrottle::FailureThrottle(ThrottlePolicy policy, size_t max_keys)
    : policy_(policy), counters_(max_keys, policy.window) {}

ThrottleAnswer FailureThrottle::check(std::string_view key, ThrottleClock::time_point now) {
  const Counter* counter = counters_.find(key, now);
  if (counter == nullptr) return {ThrottleVerdict::allow, milliseconds{0}};
  if (counter->failures >= policy_.block_after) {
    const auto left = policy_.window - (now - counter->last_failure);
    // Round up: "refused for 0 ms" would read as "try again now".
    return {ThrottleVerdict::refuse, std::chrono::ceil<milliseconds>(left)};
  }
  if (counter->failures < policy_.free_failures) return {ThrottleVerdict::allow, milliseconds{0}};

  // base_delay * 2^(failures - free_failures), capped; doubling stops at the cap, so neither
  // the loop nor the arithmetic can run away whatever the policy says.
  milliseconds delay = policy_.base_delay;
  for (uint32_t i = counter->failures - policy_.free_failures;
       i > 0 && delay > milliseconds{0} && delay < policy_.max_delay; --i)
    delay = delay > policy_.max_delay / 2 ? policy_.max_delay : delay * 2;
  delay = std::min(delay, policy_.max_delay);
  if (delay <= milliseconds{0}) return {ThrottleVerdict::allow, milliseconds{0}};
  return {ThrottleVerdict::delay, delay};
}

void FailureThrottle::record_failure(std::string_view key, ThrottleClock::time_point now) {
  Counter& counter = counters_.use(key, now);
  if (counter.failures < UINT32_MAX) ++counter.failures;
  counter.last_failure = now;
}

void FailureThrottle::record_success(std::string_view key) {
  counters_.erase(key);
}

AuthThrottle::AuthThrottle(size_t max_keys)
    : by_address_(kAddressPolicy, max_keys),
      by_pair_(kPairPolicy, max_keys),
      by_user_(kUserPolicy, max_keys) {}

// The address key never holds a NUL, so the first one ends it whatever the user name holds.
std::string AuthThrottle::pair_key(std::string_view address, std::string_view user) {
  std::string key = client_key(address);
  key += '\0';
  key += user;
  return key;
}

ThrottleAnswer AuthThrottle::address_verdict(std::string_view address, std::string_view user,
                                             ThrottleClock::time_point now) {
  const ThrottleAnswer by_address = by_address_.check(client_key(address), now);
  const ThrottleAnswer by_pair = by_pair_.check(pair_key(address, user), now);
  if (by_address.first == ThrottleVerdict::refuse || by_pair.first == ThrottleVerdict::refuse) {
    const milliseconds a =
        by_address.first == ThrottleVerdict::refuse ? by_address.second : milliseconds{0};
    const milliseconds p =
        by_pair.first == ThrottleVerdict::refuse ? by_pair.second : milliseconds{0};
    return {ThrottleVerdict::refuse, std::max(a, p)};
  }
  const milliseconds wait = std::max(by_address.second, by_pair.second);
  return {wait > milliseconds{0} ? ThrottleVerdict::delay : ThrottleVerdict::allow, wait};
}

ThrottleAnswer AuthThrottle::before_check(std::string_view address, std::string_view user,
                                          ThrottleClock::time_point now) {
  const ThrottleAnswer here = address_verdict(address, user, now);
  if (here.first == ThrottleVerdict::refuse) return here;
  // The name's count from everywhere: a delay at most, never a refusal.
  const auto [by_user, user_wait] = by_user_.check(user, now);
  const milliseconds user_delay = by_user == ThrottleVerdict::allow    ? milliseconds{0}
                                  : by_user == ThrottleVerdict::refuse ? kUserPolicy.max_delay
                                                                       : user_wait;
  const milliseconds wait = std::max(here.second, user_delay);
  return {wait > milliseconds{0} ? ThrottleVerdict::delay : ThrottleVerdict::allow, wait};
}

ThrottleAnswer AuthThrottle::right_password(std::string_view address, std::string_view user,
                                            ThrottleClock::time_point now) {
  const ThrottleAnswer here = address_verdict(address, user, now);
  if (here.first == ThrottleVerdict::refuse) return here;
  by_pair_.record_success(pair_key(address, user));
  return {ThrottleVerdict::allow, milliseconds{0}};
}

ThrottleAnswer AuthThrottle::wrong_password(std::string_view address, std::string_view user,
                                            ThrottleClock::time_point now) {
  const ThrottleAnswer before = address_verdict(address, user, now);
  by_address_.record_failure(client_key(address), now);
  by_pair_.record_failure(pair_key(address, user), now);
  by_user_.record_failure(user, now);
  if (before.first == ThrottleVerdict::refuse) return before;
  return {ThrottleVerdict::allow, milliseconds{0}};
}

ConnectionRate::ConnectionRate(uint32_t per_minute, size_t max_keys)
    : per_minute_(per_minute), rates_(max_keys, kRateLifetime) {}

namespace {

double decayed(double connections, ThrottleClock::duration elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  return seconds <= 0
             ? connections
             : connections * std::exp(-seconds / static_cast<double>(kRateTimeConstant.count()));
}

}  // namespace

ThrottleAnswer ConnectionRate::connect(std::string_view key, ThrottleClock::time_point now) {
  if (per_minute_ == 0) return {ThrottleVerdict::allow, milliseconds{0}};
  Level& level = rates_.use(key, now);
  level.connections = decayed(level.connections, now - level.at) + 1;
  level.at = now;
  const double limit = per_minute_;
  if (level.connections <= limit) return {ThrottleVerdict::allow, milliseconds{0}};
  if (level.connections > 2 * limit) {
    // Until the level has decayed back to the limit: t = T ln(level / limit).
    const double seconds =
        static_cast<double>(kRateTimeConstant.count()) * std::log(level.connections / limit);
    return {ThrottleVerdict::refuse, milliseconds{static_cast<int64_t>(std::ceil(seconds * 1000))}};
  }
  // From nothing at the limit up to kMaxDelay at twice the limit.
  const double share = (level.connections - limit) / limit;
  const auto delay = milliseconds{static_cast<int64_t>(std::ceil(share * kMaxDelay.count()))};
  return {ThrottleVerdict::delay, std::clamp(delay, milliseconds{1}, kMaxDelay)};
}

double ConnectionRate::rate(std::string_view key, ThrottleClock::time_point now) {
  const Level* level = rates_.find(key, now);
  return level == nullptr ? 0 : decayed(level->connections, now - level->at);
}

std::string client_key(std::string_view address) {
  std::string text(address);
  std::optional<sockaddr_storage> parsed;
  if (text.find(':') != std::string::npos) parsed = inet::parse_ip_address(text);
  if (!parsed) return text;
  auto& v6 = reinterpret_cast<sockaddr_in6&>(*parsed).sin6_addr;
  // An IPv4 client of a dual-stack listener is keyed as IPv4, as every process prints it.
  if (IN6_IS_ADDR_V4MAPPED(&v6)) return inet::address_text(*parsed);
  std::memset(v6.s6_addr + 8, 0, 8);
  return inet::address_text(*parsed) + "/64";
}

}  // namespace postern::lookup
