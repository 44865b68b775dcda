// The parent's crash back-off (smtpd(8), SUPERVISION): how long to wait before restarting a
// child that died, from how many times in a row it has died. Arithmetic only, so that the
// doubling, the cap and the quiet period are tested without a daemon.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace postern::smtpd {

// A child that dies is restarted after kFirstRestartDelay, doubled for each crash in a row
// up to kMaxRestartDelay: a crash loop is throttled, and the daemon never stops because of
// it (a remote client that can crash smtp must not be able to stop the mail). A child that
// ran for kCrashQuietPeriod before it died starts the count afresh.
constexpr std::chrono::milliseconds kFirstRestartDelay{100};
constexpr std::chrono::milliseconds kMaxRestartDelay{60000};
constexpr std::chrono::seconds kCrashQuietPeriod{60};

class CrashBackoff {
 public:
  using Clock = std::chrono::steady_clock;

  // The child started at `started` crashed at `now`: counts the crash, returns the delay.
  std::chrono::milliseconds crashed(Clock::time_point started, Clock::time_point now) {
    if (now - started >= kCrashQuietPeriod) crashes_ = 0;
    ++crashes_;
    // The shift stops long before it could overflow; the cap is reached at the 11th crash.
    const auto doubled = kFirstRestartDelay * (int64_t{1} << std::min<uint32_t>(crashes_ - 1, 20));
    return std::min<std::chrono::milliseconds>(doubled, kMaxRestartDelay);
  }
  // Crashes in a row so far. A child running since `started` has its count forgotten at its
  // next crash once the quiet period is over, so it is shown as 0 then.
  uint32_t crashes(bool running, Clock::time_point started, Clock::time_point now) const {
    return running && now - started >= kCrashQuietPeriod ? 0 : crashes_;
  }
  uint32_t crashes() const { return crashes_; }

 private:
  uint32_t crashes_ = 0;
};

}  // namespace postern::smtpd
