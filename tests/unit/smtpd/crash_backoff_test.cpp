// The crash back-off: 100 ms doubling per crash in a row, capped at 60 s however long the loop
// goes on, and forgotten once a child has run for the quiet period.
#include "smtpd/crash_backoff.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace postern::smtpd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = CrashBackoff::Clock;

TEST(CrashBackoff, DoublesPerCrashInARowUpToTheCap) {
  CrashBackoff backoff;
  Clock::time_point now{};
  std::vector<int64_t> delays;
  for (int i = 0; i < 12; ++i) {
    const Clock::time_point started = now;
    now += seconds(1);  // dies a second after each start
    const milliseconds delay = backoff.crashed(started, now);
    delays.push_back(delay.count());
    now += delay;
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200,
                                          60000, 60000}));
  EXPECT_EQ(backoff.crashes(), 12u);
}

TEST(CrashBackoff, NeverOverflowsHoweverLongTheLoop) {
  CrashBackoff backoff;
  const Clock::time_point start{};
  milliseconds delay{};
  for (int i = 0; i < 100000; ++i) delay = backoff.crashed(start, start);
  EXPECT_EQ(delay, kMaxRestartDelay);
  EXPECT_EQ(backoff.crashes(), 100000u);
}

TEST(CrashBackoff, AQuietRunStartsTheCountAfresh) {
  CrashBackoff backoff;
  const Clock::time_point started{};
  for (int i = 0; i < 5; ++i) backoff.crashed(started, started + seconds(1));
  EXPECT_EQ(backoff.crashes(), 5u);
  // Still counted while it runs, until the quiet period is over.
  EXPECT_EQ(backoff.crashes(true, started, started + seconds(59)), 5u);
  EXPECT_EQ(backoff.crashes(true, started, started + kCrashQuietPeriod), 0u);
  EXPECT_EQ(backoff.crashes(false, started, started + kCrashQuietPeriod), 5u);
  // Just short of the quiet period: the sixth crash in a row.
  EXPECT_EQ(backoff.crashed(started, started + seconds(59)), milliseconds(3200));
  // A full quiet period: the first crash again.
  EXPECT_EQ(backoff.crashed(started, started + kCrashQuietPeriod), kFirstRestartDelay);
  EXPECT_EQ(backoff.crashes(), 1u);
}

}  // namespace
}  // namespace postern::smtpd
