// Abuse limits. Failure throttle: free failures, exponential delays with a cap, refusal,
// expiry, and memory that stays bounded however many keys a client invents. Connection rate:
// let in up to the limit, then a growing delay, then refusal, and forgiven with time. Time is
// passed in: no sleeping.
#include "lookup/throttle.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::lookup {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const Clock::time_point kT0 = Clock::time_point{} + std::chrono::hours(1000);

std::pair<ThrottleVerdict, milliseconds> allow() {
  return {ThrottleVerdict::allow, milliseconds{0}};
}
std::pair<ThrottleVerdict, milliseconds> delay(int64_t ms) {
  return {ThrottleVerdict::delay, milliseconds{ms}};
}
std::pair<ThrottleVerdict, milliseconds> refuse(int64_t ms) {
  return {ThrottleVerdict::refuse, milliseconds{ms}};
}

TEST(FailureThrottle, FreeFailuresThenExponentialDelayThenRefusal) {
  FailureThrottle throttle(ThrottlePolicy{});
  const std::string ip = "192.0.2.7";
  // Failures so far -> verdict before the next attempt (defaults: 3 free, 1 s doubling to 16 s,
  // refused at 10).
  const std::pair<ThrottleVerdict, milliseconds> expected[] = {
      allow(),     allow(),      allow(),      delay(1000),  delay(2000),    delay(4000),
      delay(8000), delay(16000), delay(16000), delay(16000), refuse(600000),
  };
  auto now = kT0;
  for (const auto& verdict : expected) {
    EXPECT_EQ(throttle.check(ip, now), verdict);
    throttle.record_failure(ip, now);
  }
  // Refused attempts that still fail keep it refused; the remaining time counts down from the
  // last failure.
  EXPECT_EQ(throttle.check(ip, now + seconds(100)), refuse(500000));
  EXPECT_EQ(throttle.check(ip, now + milliseconds(599999) + std::chrono::microseconds(1)),
            refuse(1));
}

TEST(FailureThrottle, ExpiresAfterTheWindowSinceTheLastFailure) {
  FailureThrottle throttle(ThrottlePolicy{});
  for (int i = 0; i < 10; ++i) throttle.record_failure("bob", kT0);
  EXPECT_EQ(throttle.check("bob", kT0 + seconds(599)).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.check("bob", kT0 + seconds(600)), allow());
  EXPECT_EQ(throttle.size(), 0u);
  // After expiry the count starts again from one.
  throttle.record_failure("bob", kT0 + seconds(601));
  EXPECT_EQ(throttle.check("bob", kT0 + seconds(601)), allow());
  EXPECT_EQ(throttle.size(), 1u);
}

TEST(FailureThrottle, SlowGuessingStillAccumulates) {
  FailureThrottle throttle(ThrottlePolicy{});
  auto now = kT0;
  for (int i = 0; i < 10; ++i) {
    throttle.record_failure("bob", now);
    now += seconds(540);  // one guess every 9 minutes, inside the 10-minute window
  }
  EXPECT_EQ(throttle.check("bob", now).first, ThrottleVerdict::refuse);
}

TEST(FailureThrottle, SuccessClears) {
  FailureThrottle throttle(ThrottlePolicy{});
  for (int i = 0; i < 5; ++i) throttle.record_failure("alice", kT0);
  EXPECT_EQ(throttle.check("alice", kT0), delay(4000));
  throttle.record_success("alice");
  EXPECT_EQ(throttle.check("alice", kT0), allow());
  EXPECT_EQ(throttle.size(), 0u);
  throttle.record_success("never-seen");
  EXPECT_EQ(throttle.size(), 0u);
}

TEST(FailureThrottle, KeysAreIndependent) {
  FailureThrottle throttle(ThrottlePolicy{});
  for (int i = 0; i < 10; ++i) throttle.record_failure("192.0.2.1", kT0);
  throttle.record_failure("alice", kT0);
  EXPECT_EQ(throttle.check("192.0.2.1", kT0).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.check("192.0.2.2", kT0), allow());
  EXPECT_EQ(throttle.check("alice", kT0), allow());
  EXPECT_EQ(throttle.check("192.0.2.", kT0), allow());
  throttle.record_success("alice");
  EXPECT_EQ(throttle.check("192.0.2.1", kT0).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.size(), 1u);
}

TEST(FailureThrottle, MemoryStaysBounded) {
  FailureThrottle throttle(ThrottlePolicy{}, 1000);
  auto now = kT0;
  for (int i = 0; i < 200000; ++i) {
    throttle.record_failure("key" + std::to_string(i), now);
    now += milliseconds(1);
    ASSERT_LE(throttle.size(), 1000u);
  }
  EXPECT_EQ(throttle.size(), 1000u);
  // The oldest went first; the newest are still counted (one failure from the loop).
  EXPECT_EQ(throttle.check("key0", now), allow());
  for (int i = 0; i < 3; ++i) throttle.record_failure("key199999", now);
  EXPECT_EQ(throttle.check("key199999", now), delay(2000));
  EXPECT_LE(throttle.size(), 1000u);
}

TEST(FailureThrottle, RefreshedKeysSurviveEviction) {
  FailureThrottle throttle(ThrottlePolicy{}, 3);
  for (int i = 0; i < 4; ++i) throttle.record_failure("attacker", kT0);
  throttle.record_failure("a", kT0 + seconds(1));
  throttle.record_failure("b", kT0 + seconds(2));
  throttle.record_failure("attacker", kT0 + seconds(3));  // now the most recent
  throttle.record_failure("c", kT0 + seconds(4));         // evicts "a"
  EXPECT_EQ(throttle.size(), 3u);
  EXPECT_EQ(throttle.check("attacker", kT0 + seconds(4)), delay(4000));
  EXPECT_EQ(throttle.check("a", kT0 + seconds(4)), allow());
}

TEST(FailureThrottle, ExpiredKeysAreSweptWithoutBeingAsked) {
  FailureThrottle throttle(ThrottlePolicy{});
  for (int i = 0; i < 20; ++i) throttle.record_failure("old" + std::to_string(i), kT0);
  EXPECT_EQ(throttle.size(), 20u);
  const auto later = kT0 + seconds(601);
  for (int i = 0; i < 20 && throttle.size() > 0; ++i) (void)throttle.check("other", later);
  EXPECT_EQ(throttle.size(), 0u);
}

TEST(FailureThrottle, LongKeysAreBounded) {
  FailureThrottle throttle(ThrottlePolicy{});
  const std::string prefix(256, 'u');
  for (int i = 0; i < 3; ++i) throttle.record_failure(prefix + std::to_string(i), kT0);
  EXPECT_EQ(throttle.size(), 1u);
  EXPECT_EQ(throttle.check(prefix + "anything", kT0), delay(1000));
  throttle.record_failure(std::string(100000, 'x'), kT0);
  EXPECT_EQ(throttle.size(), 2u);
}

TEST(FailureThrottle, OddPoliciesStaySane) {
  // No delays at all: only the refusal is left.
  FailureThrottle no_delay(ThrottlePolicy{.base_delay = milliseconds{0}});
  for (int i = 0; i < 9; ++i) no_delay.record_failure("k", kT0);
  EXPECT_EQ(no_delay.check("k", kT0), allow());
  no_delay.record_failure("k", kT0);
  EXPECT_EQ(no_delay.check("k", kT0).first, ThrottleVerdict::refuse);

  // A cap near the top of the range must not overflow into a negative delay.
  FailureThrottle huge(ThrottlePolicy{.free_failures = 0,
                                      .block_after = UINT32_MAX,
                                      .window = seconds{1000000},
                                      .base_delay = milliseconds{1},
                                      .max_delay = milliseconds::max()});
  for (int i = 0; i < 200; ++i) huge.record_failure("k", kT0);
  EXPECT_EQ(huge.check("k", kT0), delay(milliseconds::max().count()));

  // A base above the cap is the cap.
  FailureThrottle capped(ThrottlePolicy{.base_delay = seconds{60}, .max_delay = seconds{5}});
  for (int i = 0; i < 3; ++i) capped.record_failure("k", kT0);
  EXPECT_EQ(capped.check("k", kT0), delay(5000));

  // max_keys 0 still keeps one key rather than failing.
  FailureThrottle tiny(ThrottlePolicy{}, 0);
  tiny.record_failure("a", kT0);
  tiny.record_failure("b", kT0);
  EXPECT_EQ(tiny.size(), 1u);
}

// AUTH: an attacker guessing alice's password from one address must not lock alice out.
TEST(AuthThrottle, GuessingFromOneAddressRefusesItButNotTheOwnerElsewhere) {
  AuthThrottle throttle;
  const std::pair<ThrottleVerdict, milliseconds> expected[] = {
      allow(),     allow(),      allow(),      delay(1000),  delay(2000),    delay(4000),
      delay(8000), delay(16000), delay(16000), delay(16000), refuse(600000),
  };
  for (const auto& verdict : expected) {
    EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0), verdict);
    (void)throttle.wrong_password("192.0.2.1", "alice", kT0);
  }
  (void)throttle.wrong_password("192.0.2.1", "alice", kT0);  // 12 in all
  // The attacker's address stays refused for alice, even with her password.
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.right_password("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
  // And slowed down for anyone else (12 failures from it, 5 free: the 16 s cap).
  EXPECT_EQ(throttle.before_check("192.0.2.1", "bob", kT0), delay(16000));
  // Alice from elsewhere: her name's count only holds the check back (8 s at most).
  EXPECT_EQ(throttle.before_check("198.51.100.7", "alice", kT0), delay(8000));
  EXPECT_EQ(throttle.right_password("198.51.100.7", "alice", kT0), allow());
  // Her success does not clear the attacker's record.
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
}

TEST(AuthThrottle, AUserCountNeverRefuses) {
  AuthThrottle throttle;
  // A thousand addresses, a few guesses each: no address or pair reaches its limit.
  for (int i = 0; i < 1000; ++i)
    for (int k = 0; k < 3; ++k)
      (void)throttle.wrong_password(
          "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250), "alice", kT0);
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0),
            delay(AuthThrottle::kUserPolicy.max_delay.count()));
  EXPECT_EQ(throttle.right_password("192.0.2.1", "alice", kT0), allow());
}

TEST(AuthThrottle, SprayingManyUsersFromOneAddressIsRefused) {
  AuthThrottle throttle;
  for (uint32_t i = 0; i < AuthThrottle::kAddressPolicy.block_after; ++i)
    (void)throttle.wrong_password("192.0.2.1", "user" + std::to_string(i), kT0);
  EXPECT_EQ(throttle.before_check("192.0.2.1", "someone-new", kT0).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.before_check("192.0.2.2", "someone-new", kT0), allow());
  // IPv6: the whole /64 counts as one address.
  for (uint32_t i = 0; i < AuthThrottle::kAddressPolicy.block_after; ++i)
    (void)throttle.wrong_password("2001:db8::" + std::to_string(i + 1), "u" + std::to_string(i),
                                  kT0);
  EXPECT_EQ(throttle.before_check("2001:db8::ffff", "x", kT0).first, ThrottleVerdict::refuse);
}

TEST(AuthThrottle, ARightPasswordClearsOnlyItsOwnPair) {
  AuthThrottle throttle;
  for (int i = 0; i < 9; ++i) (void)throttle.wrong_password("192.0.2.1", "alice", kT0);
  // Logging in to an account of one's own does not wipe the address's failures...
  EXPECT_EQ(throttle.right_password("192.0.2.1", "mallory", kT0), allow());
  (void)throttle.wrong_password("192.0.2.1", "alice", kT0);
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
  // ...while the owner's own success clears her pair (the address's count stays).
  AuthThrottle other;
  for (int i = 0; i < 9; ++i) (void)other.wrong_password("192.0.2.1", "alice", kT0);
  EXPECT_EQ(other.right_password("192.0.2.1", "alice", kT0), allow());
  for (int i = 0; i < 9; ++i) (void)other.wrong_password("192.0.2.1", "alice", kT0);
  EXPECT_EQ(other.before_check("192.0.2.1", "alice", kT0).first, ThrottleVerdict::delay);
}

TEST(AuthThrottle, ParallelAttemptsLearnNothingOnceRefused) {
  AuthThrottle throttle;
  // Twelve checks asked at once all passed before_check; their answers come in one by one.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(throttle.wrong_password("192.0.2.1", "alice", kT0), allow()) << i;
  EXPECT_EQ(throttle.wrong_password("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
  EXPECT_EQ(throttle.right_password("192.0.2.1", "alice", kT0).first, ThrottleVerdict::refuse);
  // Time forgives: ten minutes after the last failure.
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0 + seconds(600)), allow());
}

TEST(AuthThrottle, UserNamesCannotForgeAnotherPair) {
  AuthThrottle throttle;
  // A name holding what a pair key separates fields with stays a name of its own.
  for (int i = 0; i < 10; ++i)
    (void)throttle.wrong_password("192.0.2.1", std::string("x\0alice", 7), kT0);
  EXPECT_EQ(throttle.before_check("192.0.2.1", "alice", kT0).first, ThrottleVerdict::delay);
}

TEST(ConnectionRate, UpToTheLimitThenDelayThenRefusal) {
  ConnectionRate rate(10);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(rate.connect("192.0.2.1", kT0), allow()) << i;
  // 11 at once: a tenth over the limit, a tenth of the longest delay.
  EXPECT_EQ(rate.connect("192.0.2.1", kT0), delay(1000));
  for (int i = 12; i < 20; ++i)
    ASSERT_EQ(rate.connect("192.0.2.1", kT0).first, ThrottleVerdict::delay) << i;
  EXPECT_EQ(rate.connect("192.0.2.1", kT0), delay(ConnectionRate::kMaxDelay.count()));
  // 21: over twice the limit. Back under 10 after 60 s * ln(21/10) = 44.52 s.
  EXPECT_EQ(rate.connect("192.0.2.1", kT0), refuse(44517));
  // Another client is not affected.
  EXPECT_EQ(rate.connect("192.0.2.2", kT0), allow());
}

TEST(ConnectionRate, RefusedConnectionsCountAndTimeForgives) {
  ConnectionRate rate(10);
  for (int i = 0; i < 100; ++i) (void)rate.connect("k", kT0);
  EXPECT_NEAR(rate.rate("k", kT0), 100, 1e-9);
  // Still hammering a second later: still refused.
  EXPECT_EQ(rate.connect("k", kT0 + seconds(1)).first, ThrottleVerdict::refuse);
  // Quiet for three minutes: 101 * e^-3 = 5 left, under the limit.
  EXPECT_EQ(rate.connect("k", kT0 + seconds(181)), allow());
  // Quiet for ten minutes: forgotten altogether.
  EXPECT_EQ(rate.rate("k", kT0 + seconds(781)), 0);
  EXPECT_EQ(rate.size(), 0u);
}

TEST(ConnectionRate, ASteadyRateSettlesAtItsValue) {
  ConnectionRate rate(100);
  auto now = kT0;
  // One connection a second is 60 a minute: always let in.
  for (int i = 0; i < 1000; ++i, now += seconds(1)) ASSERT_EQ(rate.connect("k", now), allow());
  EXPECT_NEAR(rate.rate("k", now), 60, 1.0);
  // Five a second is 300 a minute: refused once the count has built up.
  ConnectionRate fast(100);
  bool refused = false;
  for (int i = 0; i < 1000 && !refused; ++i, now += milliseconds(200))
    refused = fast.connect("k", now).first == ThrottleVerdict::refuse;
  EXPECT_TRUE(refused);
}

TEST(ConnectionRate, NoLimitCountsNothing) {
  ConnectionRate rate(0);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(rate.connect("k", kT0), allow());
  EXPECT_EQ(rate.size(), 0u);
}

TEST(ConnectionRate, MemoryStaysBounded) {
  ConnectionRate rate(5, 1000);
  auto now = kT0;
  for (int i = 0; i < 100000; ++i, now += milliseconds(1))
    ASSERT_EQ(rate.connect("198.51." + std::to_string(i), now), allow());
  EXPECT_EQ(rate.size(), 1000u);
}

TEST(ClientKey, IPv6CountsByItsSlash64) {
  EXPECT_EQ(client_key("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(client_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(client_key("2001:db8:1:2:bbbb::2"), "2001:db8:1:2::/64");
  EXPECT_EQ(client_key("::1"), "::/64");
  EXPECT_EQ(client_key("::ffff:192.0.2.9"), "192.0.2.9");
  EXPECT_EQ(client_key("not:an address"), "not:an address");
}

}  // namespace
}  // namespace postern::lookup
