// Tests for mta/shaping.cpp with a clock the test moves: the token bucket, sites by domain and
// by MX host, the rate gate (wait or defer), and the reply rules (trigger, threshold, suspend,
// slow-down and its step-by-step recovery, synthetic failures ignored).
#include "mta/shaping.hpp"

#include <gtest/gtest.h>

namespace postern::mta {
namespace {

using namespace std::chrono_literals;

mail::RecipientResult reply(uint16_t code, std::string status, std::string text,
                            mail::ClientPhase phase = mail::ClientPhase::mail) {
  return {mail::RecipientStatus::temporary, phase, code, std::move(status), std::move(text)};
}

class ShapingTest : public ::testing::Test {
 protected:
  Clock::time_point now_ = Clock::time_point{} + 1000h;
  Shaper shaper_{[this] { return now_; }};
  bool triggers(const std::string& site, const mail::RecipientResult& r, std::string_view server,
                size_t open = 0) {
    return shaper_.observe(site, r, server, open).triggered;
  }
};

TEST(TokenBucketTest, HoldsASecondsWorthAndRefills) {
  TokenBucket b;
  auto t = Clock::time_point{} + 10h;
  b.configure(120, t);  // 2 a second: holds 2
  EXPECT_EQ(b.take(t), Clock::duration{});
  EXPECT_EQ(b.take(t), Clock::duration{});
  const auto wait = b.take(t);
  EXPECT_GT(wait, 400ms);
  EXPECT_LE(wait, 500ms);
  EXPECT_EQ(b.take(t + 500ms), Clock::duration{});
  EXPECT_GT(b.take(t + 500ms), Clock::duration{});
  // A long pause fills it only to its capacity.
  t += 1h;
  EXPECT_EQ(b.take(t), Clock::duration{});
  EXPECT_EQ(b.take(t), Clock::duration{});
  EXPECT_GT(b.take(t), Clock::duration{});
}

TEST(TokenBucketTest, ZeroIsUnlimited) {
  TokenBucket b;
  const auto t = Clock::time_point{} + 10h;
  b.configure(0, t);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(b.take(t), Clock::duration{});
}

TEST_F(ShapingTest, SitesByDomainAndByMxHost) {
  Settings s;
  s.shaping = {{.match = {"example.org"},
                .mx = {},
                .rate = 10,
                .connections = 2,
                .messages_per_connection = std::nullopt,
                .recipients = 50},
               {.match = {},
                .mx = {"*.google.com"},
                .rate = std::nullopt,
                .connections = std::nullopt,
                .messages_per_connection = std::nullopt,
                .recipients = std::nullopt}};
  s.destination_rate = 100;
  shaper_.configure(s);
  EXPECT_EQ(shaper_.site_of("example.org", "mx.example.org", "example.org"),
            "shaping 0 (example.org)");
  const std::string a = shaper_.site_of("a.test", "ALT1.aspmx.l.Google.com", "a.test");
  EXPECT_EQ(a, "shaping 1 (*.google.com)");
  EXPECT_EQ(shaper_.site_of("b.test", "aspmx.l.google.com", "b.test"), a);
  EXPECT_EQ(shaper_.site_of("c.test", "mx.c.test", "c.test"), "c.test");
  EXPECT_EQ(shaper_.limits("shaping 0 (example.org)").rate, 10u);
  EXPECT_EQ(shaper_.limits("shaping 0 (example.org)").connections, 2u);
  EXPECT_EQ(shaper_.limits("shaping 0 (example.org)").recipients, 50u);
  EXPECT_EQ(shaper_.limits(a).rate, 100u);  // the limits.* default
  EXPECT_EQ(shaper_.limits(a).connections, s.destination_connections);
}

TEST_F(ShapingTest, OverTheRateWaitsWhenShortAndDefersWhenLong) {
  Settings s;
  s.destination_rate = 60;  // one a second
  s.rate_hold = 60;
  shaper_.configure(s);
  EXPECT_EQ(shaper_.admit("d.test").kind, Shaper::Gate::Kind::go);
  auto g = shaper_.admit("d.test");
  EXPECT_EQ(g.kind, Shaper::Gate::Kind::wait);
  EXPECT_LE(g.delay, 1s);
  now_ += 1s;
  EXPECT_EQ(shaper_.admit("d.test").kind, Shaper::Gate::Kind::go);
  // One a minute with a hold of 10 s: the next is deferred with the time it has room.
  s.destination_rate = 1;
  s.rate_hold = 10;
  shaper_.configure(s);
  EXPECT_EQ(shaper_.admit("e.test").kind, Shaper::Gate::Kind::go);
  g = shaper_.admit("e.test");
  EXPECT_EQ(g.kind, Shaper::Gate::Kind::defer);
  EXPECT_GT(g.delay, 50s);
  EXPECT_LE(g.delay, 60s);
  EXPECT_NE(g.why.find("rate of 1 messages a minute"), std::string::npos);
}

TEST_F(ShapingTest, GmailRateLimitHalvesTheRateThenRecoversStepByStep) {
  Settings s;
  s.destination_rate = 100;
  s.reply_rules = default_reply_rules();
  for (auto& r : s.reply_rules) {
    r.duration = 10;
    r.recover = 5;
  }
  shaper_.configure(s);
  EXPECT_TRUE(triggers("g.test", reply(421, "4.7.28", "rate limited"), "mx"));
  EXPECT_EQ(shaper_.limits("g.test").rate, 50u);
  EXPECT_NE(shaper_.describe("g.test").find("slowed by rule gmail-rate"), std::string::npos);
  EXPECT_EQ(shaper_.altered(), std::vector<std::string>{"g.test"});
  now_ += 9s;
  EXPECT_TRUE(shaper_.tick());
  EXPECT_EQ(shaper_.limits("g.test").rate, 50u);  // held for its duration
  now_ += 1s;
  shaper_.tick();
  EXPECT_EQ(shaper_.limits("g.test").rate, 60u);  // +1/10 of the configured rate a step
  now_ += 5s * 3;
  shaper_.tick();
  EXPECT_EQ(shaper_.limits("g.test").rate, 90u);
  now_ += 5s;
  EXPECT_FALSE(shaper_.tick());
  EXPECT_EQ(shaper_.limits("g.test").rate, 100u);
  EXPECT_TRUE(shaper_.altered().empty());
}

TEST_F(ShapingTest, AnUnlimitedSiteIsSlowedToHalfOfWhatItSentThenLifted) {
  Settings s;
  shaper_.configure(s);
  for (int i = 0; i < 40; ++i) ASSERT_EQ(shaper_.admit("u.test").kind, Shaper::Gate::Kind::go);
  // 40 within a second: 2,400 a minute, halved.
  EXPECT_TRUE(triggers("u.test", reply(421, "4.7.28", "slow down"), "mx"));
  EXPECT_EQ(shaper_.limits("u.test").rate, 1200u);
  // Replies to what was already under way do not lower it again at once; later ones do.
  EXPECT_FALSE(triggers("u.test", reply(421, "4.7.28", "slow down"), "mx"));
  EXPECT_EQ(shaper_.limits("u.test").rate, 1200u);
  now_ += 5s;
  EXPECT_TRUE(triggers("u.test", reply(421, "4.7.28", "slow down"), "mx"));
  EXPECT_EQ(shaper_.limits("u.test").rate, 600u);
  now_ += 1h;
  EXPECT_FALSE(shaper_.tick());
  EXPECT_EQ(shaper_.limits("u.test").rate, 0u);
}

// What the servers accepted sets the slowed rate: just under it, measured over at least a
// second; the site's saved-up tokens are dropped, so it does not burst into a full server.
// Told again later, it measures what was accepted since it was lowered.
TEST_F(ShapingTest, SlowedToJustUnderWhatItsServersAccepted) {
  Settings s;
  shaper_.configure(s);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(shaper_.admit("a.test").kind, Shaper::Gate::Kind::go);
    shaper_.delivered("a.test");
    now_ += 50ms;  // 20 a second
  }
  EXPECT_TRUE(triggers("a.test", reply(421, "4.7.28", "rate limited"), "mx"));
  const uint32_t first = shaper_.limits("a.test").rate;
  EXPECT_GE(first, 1130u);  // 0.95 x 1,200 a minute
  EXPECT_LE(first, 1145u);
  EXPECT_EQ(shaper_.admit("a.test").kind, Shaper::Gate::Kind::wait);
  for (int i = 0; i < 60; ++i) {
    now_ += 100ms;  // 10 a second accepted since
    shaper_.delivered("a.test");
  }
  EXPECT_TRUE(triggers("a.test", reply(421, "4.7.28", "rate limited"), "mx"));
  // 0.95 x 60 over the 5.9 s from the first to the last would be 579; a limited rate is
  // lowered by at most 30% a time (the site may have sent less than it could).
  EXPECT_GE(shaper_.limits("a.test").rate, 797u);
  EXPECT_LE(shaper_.limits("a.test").rate, 798u);
  for (int i = 0; i < 120; ++i) {
    now_ += 50ms;  // 20 a second: 1,200 a minute, over the 798 it sends at now
    shaper_.delivered("a.test");
  }
  EXPECT_TRUE(triggers("a.test", reply(421, "4.7.28", "rate limited"), "mx"));
  EXPECT_EQ(shaper_.limits("a.test").rate, 798u);  // never raised by a slow-down
}

// A connection refused at the greeting while the server let in others: the site keeps to that
// many; not knowing how many, it halves.
TEST_F(ShapingTest, RefusedConnectionsLearnTheServersLimit) {
  Settings s;
  s.destination_connections = 20;
  shaper_.configure(s);
  const auto refused =
      reply(421, "4.7.0", "too many connections from your IP", mail::ClientPhase::greeting);
  EXPECT_FALSE(triggers("c.test", refused, "mx", 5));
  EXPECT_FALSE(triggers("c.test", refused, "mx", 5));
  EXPECT_TRUE(triggers("c.test", refused, "mx", 5));
  EXPECT_EQ(shaper_.limits("c.test").connections, 5u);
  for (int i = 0; i < 3; ++i) triggers("d.test", refused, "mx");
  EXPECT_EQ(shaper_.limits("d.test").connections, 10u);
}

TEST_F(ShapingTest, YahooSuspendsAndTheGateDefersWithTheTimeLeft) {
  Settings s;
  shaper_.configure(s);
  EXPECT_TRUE(triggers(
      "y.test", reply(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred"), "mx"));
  auto g = shaper_.peek("y.test");
  EXPECT_EQ(g.kind, Shaper::Gate::Kind::defer);
  EXPECT_EQ(g.delay, 4h);
  now_ += 4h - 1s;
  EXPECT_EQ(shaper_.admit("y.test").delay, 1s);
  EXPECT_NE(shaper_.describe("y.test").find("suspended by rule yahoo-tss04, 1 s left"),
            std::string::npos);
  now_ += 1s;
  EXPECT_FALSE(shaper_.tick());
  EXPECT_EQ(shaper_.admit("y.test").kind, Shaper::Gate::Kind::go);
}

TEST_F(ShapingTest, ThresholdWithinTheWindowAndConcurrencyRecovery) {
  Settings s;
  s.destination_connections = 8;
  shaper_.configure(s);
  const auto greeting = reply(421, "", "too busy", mail::ClientPhase::greeting);
  EXPECT_FALSE(triggers("c.test", greeting, "mx"));
  EXPECT_FALSE(triggers("c.test", greeting, "mx"));
  now_ += 61s;  // the first two fall out of the window
  EXPECT_FALSE(triggers("c.test", greeting, "mx"));
  EXPECT_FALSE(triggers("c.test", greeting, "mx"));
  // The same code elsewhere than at the greeting is not this rule's.
  EXPECT_FALSE(triggers("c.test", reply(421, "", "too busy"), "mx"));
  EXPECT_TRUE(triggers("c.test", greeting, "mx"));
  EXPECT_EQ(shaper_.limits("c.test").connections, 4u);
  now_ += 600s;
  shaper_.tick();
  EXPECT_EQ(shaper_.limits("c.test").connections, 5u);
  now_ += 180s;
  EXPECT_FALSE(shaper_.tick());
  EXPECT_EQ(shaper_.limits("c.test").connections, 8u);
}

TEST_F(ShapingTest, OwnFailuresNeverCount) {
  Settings s;
  for (auto& r : s.reply_rules) r.threshold = 1;
  shaper_.configure(s);
  // What the client decided itself has code 0, whatever its text says.
  EXPECT_FALSE(triggers(
      "o.test", reply(0, "4.4.2", "too many connections: rate limit [TSS04] 4.7.28"), "mx"));
  EXPECT_FALSE(triggers("o.test", reply(250, "2.0.0", "rate limit ok"), "mx"));
  EXPECT_TRUE(shaper_.altered().empty());
  EXPECT_EQ(shaper_.peek("o.test").kind, Shaper::Gate::Kind::go);
}

}  // namespace
}  // namespace postern::mta
