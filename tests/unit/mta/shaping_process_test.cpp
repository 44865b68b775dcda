// Tests for traffic shaping in the real mta process (mta/shaping.cpp through mta/relay.cpp): a
// site's rate counted at a scripted sink (waits in mta when short, deferred with retry_after when
// long), a scripted 421 4.7.28 slowing the site down and its recovery seen in show relays, and
// a Yahoo-style suspension that defers without connecting.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/mta/mta_fixture.hpp"

namespace postern::mta {
namespace {

using namespace std::chrono_literals;
using mail::Conn;
using mail::TestServer;

// A pipelining server that answers the first `refusals` transactions with `refusal` (and
// closes, as a 421 does) and accepts the rest, noting when each message arrived.
class ThrottlingSink {
 public:
  explicit ThrottlingSink(size_t refusals = 0, std::string refusal = "")
      : refusals_(refusals), refusal_(std::move(refusal)), server_([this](Conn& c) { serve(c); }) {}
  uint16_t port() const {
    return ntohs(reinterpret_cast<const sockaddr_in&>(server_.endpoint().inet->storage).sin_port);
  }
  std::vector<Clock::time_point> arrivals() {
    std::lock_guard lock(mutex_);
    return arrivals_;
  }
  int connections() { return server_.connections(); }

 private:
  void serve(Conn& c) {
    c.send("220 sink.test ESMTP\r\n");
    if (c.line().empty()) return;
    c.send("250-sink.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
    for (;;) {
      std::string line = c.line();
      if (line.empty()) return;
      if (line == "QUIT") {
        c.send("221 bye\r\n");
        return;
      }
      if (line == "RSET") {
        c.send("250 ok\r\n");
        continue;
      }
      size_t rcpts = 0;
      for (line = c.line(); line.starts_with("RCPT TO:"); line = c.line()) ++rcpts;
      if (line != "DATA") return;
      bool refuse = false;
      {
        std::lock_guard lock(mutex_);
        refuse = transactions_++ < refusals_;
      }
      if (refuse) {
        c.send(refusal_);
        return;
      }
      std::string replies = "250 2.1.0 ok\r\n";
      for (size_t i = 0; i < rcpts; ++i) replies += "250 2.1.5 ok\r\n";
      c.send(replies + "354 go ahead\r\n");
      if (!c.data()) return;
      {
        std::lock_guard lock(mutex_);
        arrivals_.push_back(Clock::now());
      }
      c.send("250 2.0.0 queued\r\n");
    }
  }

  size_t refusals_;
  std::string refusal_;
  std::mutex mutex_;
  size_t transactions_ = 0;
  std::vector<Clock::time_point> arrivals_;
  TestServer server_;  // last: its threads stop before the rest goes
};

class ShapingProcessTest : public MtaProcessTest {
 protected:
  // A route for relay.test to the sink, its site limited to rate messages a minute.
  Settings settings(uint16_t port, uint32_t rate, std::vector<ReplyRule> rules) {
    Settings s{.hostname = "mta.test",
               .routes = {{.match = {"relay.test"}, .via = {hop(port)}, .auth = ""}}};
    s.shaping = {{.match = {"relay.test"},
                  .mx = {},
                  .rate = rate,
                  .connections = std::nullopt,
                  .messages_per_connection = std::nullopt,
                  .recipients = std::nullopt}};
    s.reply_rules = std::move(rules);
    return s;
  }

  // The results of the next n reports, which come in any order (a deferred one before one
  // that waited for the site's rate).
  std::vector<msg::DeliveryResult> reports(size_t n) {
    std::vector<msg::DeliveryResult> results;
    for (size_t i = 0; i < n; ++i) {
      auto frame = mta_->await<msg::DeliveryReport>(*queue_, 20s);
      if (!frame) {
        ADD_FAILURE() << "only " << i << " reports of " << n;
        break;
      }
      EXPECT_TRUE(frame->message.last);
      for (const msg::DeliveryResult& r : frame->message.results) results.push_back(r);
    }
    return results;
  }

  std::string show_relays() {
    static uint32_t request = 1000;
    EXPECT_TRUE(control_->send(msg::CtlShowRelays{}, ++request));
    auto shown = mta_->await<msg::CtlResult>(*control_);
    return shown ? shown->message.text : "";
  }
};

// Over a rate of one a second, four messages wait in mta for their turn and all arrive, spaced
// by the bucket: the sink cannot see the four within two seconds.
TEST_F(ShapingProcessTest, ShortWaitsForTheRateAreSpentInMta) {
  ThrottlingSink sink;
  start(settings(sink.port(), 60, {}));
  for (uint32_t i = 1; i <= 4; ++i) ASSERT_TRUE(deliver({"a@relay.test"}, i));
  const auto results = reports(4);
  ASSERT_EQ(results.size(), 4u);
  for (const msg::DeliveryResult& r : results)
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
  const auto arrivals = sink.arrivals();
  ASSERT_EQ(arrivals.size(), 4u);
  EXPECT_GE(arrivals.back() - arrivals.front(), 2s);
  EXPECT_NE(show_relays().find("site shaping 0 (relay.test): rate 60/min (configured 60/min)"),
            std::string::npos);
}

// Messages that wait for the site's rate do not each open a connection of their own: one
// connection carries them as the bucket allows (more would only idle, and the receiver counts
// connections too). Once every waiting delivery opened one, up to the site's limit.
TEST_F(ShapingProcessTest, WaitingForTheRateOpensNoExtraConnections) {
  ThrottlingSink sink;
  start(settings(sink.port(), 120, {}));  // two a second, one in the bucket to begin with
  for (uint32_t i = 1; i <= 5; ++i) ASSERT_TRUE(deliver({"a@relay.test"}, i));
  for (const msg::DeliveryResult& r : reports(5))
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
  EXPECT_EQ(sink.arrivals().size(), 5u);
  EXPECT_LE(sink.connections(), 2);  // a second when the first was busy with a token left
}

// A site over its rate beside a connection idle in the cache (another destination's, to the
// same server): when the bucket lets one message go, the next waits for the shaping timer.
// Once the dispatch offered it to each idle connection in turn, which the gate sent straight
// back to the cache, until the bucket refilled: mta spun for the whole wait and answered
// nothing, not even smtpctl (a campaign to many rate-limited domains stood still).
TEST_F(ShapingProcessTest, DeliveriesOverTheRateWaitWithoutHoldingMta) {
  ThrottlingSink sink;
  Settings s = settings(sink.port(), 12, {});  // one message every 5 s
  s.routes.push_back({.match = {"other.test"}, .via = {hop(sink.port())}, .auth = ""});
  s.connection_idle = 60;
  start(s);
  // Two connections to the sink, idle once their messages went (other.test has no limit).
  ASSERT_TRUE(deliver({"a@other.test"}, 1));
  ASSERT_TRUE(deliver({"b@other.test"}, 2));
  for (const msg::DeliveryResult& r : reports(2))
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
  // The first goes at once, the second after 5 s, the third after 10 s.
  for (uint32_t i = 3; i <= 5; ++i) ASSERT_TRUE(deliver({"c@relay.test"}, i));
  ASSERT_EQ(reports(1).size(), 1u);
  // Between the second's turn and the third's, mta answers as always.
  std::this_thread::sleep_for(6500ms);
  ASSERT_TRUE(control_->send(msg::CtlShowRelays{}, 99));
  const auto shown = mta_->await<msg::CtlResult>(*control_, 2s);
  ASSERT_TRUE(shown.has_value()) << "mta did not answer while a delivery waited for the rate";
  EXPECT_NE(shown->message.text.find("1 deliveries waiting"), std::string::npos)
      << shown->message.text;
  for (const msg::DeliveryResult& r : reports(2))
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::delivered) << r.detail;
  EXPECT_EQ(sink.arrivals().size(), 5u);
}

// One a minute with no time to hold: the first goes, the others are deferred with the time the
// site has room again, and nothing more reaches the sink.
TEST_F(ShapingProcessTest, LongWaitsAreDeferredWithRetryAfter) {
  ThrottlingSink sink;
  Settings s = settings(sink.port(), 1, {});
  s.rate_hold = 0;
  start(s);
  for (uint32_t i = 1; i <= 3; ++i) ASSERT_TRUE(deliver({"a@relay.test", "b@relay.test"}, i));
  size_t delivered = 0;
  size_t deferred = 0;
  for (const msg::DeliveryResult& r : reports(3)) {
    if (r.outcome == msg::DeliveryOutcome::delivered) {
      ++delivered;
      continue;
    }
    ++deferred;
    EXPECT_EQ(r.outcome, msg::DeliveryOutcome::temporary_failure);
    EXPECT_EQ(r.dsn, "4.7.0");
    EXPECT_GE(r.retry_after, 1u);
    EXPECT_LE(r.retry_after, 60u);
    EXPECT_NE(r.detail.find("rate of 1 messages a minute"), std::string::npos) << r.detail;
  }
  EXPECT_EQ(delivered, 2u);  // one message, both its recipients
  EXPECT_EQ(deferred, 4u);
  EXPECT_EQ(sink.arrivals().size(), 1u);
}

// Gmail's 421 4.7.28 halves the site's rate (shown by smtpctl show relays), held for the rule's
// duration, then the rate climbs back a step a second to the configured one. The message it
// refused was not refused for good: it goes once more from the mta, at the lowered rate.
TEST_F(ShapingProcessTest, RateLimitedReplySlowsTheSiteThenItRecovers) {
  ThrottlingSink sink(1,
                      "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate; rate "
                      "limited\r\n");
  std::vector<ReplyRule> rules = default_reply_rules();
  for (ReplyRule& r : rules) {
    r.duration = 2;
    r.recover = 1;
  }
  start(settings(sink.port(), 120, rules));
  ASSERT_TRUE(deliver({"a@relay.test"}, 1));
  auto results = report(1);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::delivered);
  EXPECT_EQ(sink.arrivals().size(), 1u);
  EXPECT_EQ(sink.connections(), 2);  // the refusal closed the first
  std::string shown = show_relays();
  EXPECT_NE(shown.find("rate 60/min (configured 120/min)"), std::string::npos) << shown;
  EXPECT_NE(shown.find("slowed by rule gmail-rate"), std::string::npos) << shown;
  // The next message still goes, at the lowered rate.
  ASSERT_TRUE(deliver({"b@relay.test"}, 2));
  EXPECT_EQ(report(2)[10].outcome, msg::DeliveryOutcome::delivered);
  // Back to 120 in 2 s plus five steps of a second; waited for, bounded.
  const auto deadline = Clock::now() + 30s;
  while (Clock::now() < deadline && shown.find("slowed") != std::string::npos) {
    std::this_thread::sleep_for(200ms);
    shown = show_relays();
  }
  EXPECT_EQ(shown.find("slowed"), std::string::npos) << shown;
  // The site's next message finds it at its configured rate.
  ASSERT_TRUE(deliver({"c@relay.test"}, 3));
  EXPECT_EQ(report(3)[10].outcome, msg::DeliveryOutcome::delivered);
  shown = show_relays();
  EXPECT_NE(shown.find("rate 120/min (configured 120/min)"), std::string::npos) << shown;
}

// Refused again when it goes once more, the message goes back to the queue with the server's
// reply, for the queue's back-off.
TEST_F(ShapingProcessTest, RateLimitedTwiceGoesBackToTheQueue) {
  ThrottlingSink sink(2, "421 4.7.28 rate limited\r\n");
  std::vector<ReplyRule> rules = default_reply_rules();
  for (ReplyRule& r : rules) r.recover = 1;
  start(settings(sink.port(), 600, rules));
  ASSERT_TRUE(deliver({"a@relay.test"}, 1));
  auto results = report(1);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_EQ(results[10].dsn, "4.7.28");
  EXPECT_NE(results[10].detail.find("421 4.7.28 rate limited"), std::string::npos)
      << results[10].detail;
  EXPECT_EQ(sink.connections(), 2);
  EXPECT_TRUE(sink.arrivals().empty());
}

// Yahoo's [TSS04] suspends the site: what comes next is deferred with the time left, without a
// connection.
TEST_F(ShapingProcessTest, SuspendedSiteDefersWithoutConnecting) {
  ThrottlingSink sink(1, "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred\r\n");
  start(settings(sink.port(), 0, default_reply_rules()));
  ASSERT_TRUE(deliver({"a@relay.test"}, 1));
  EXPECT_EQ(report(1)[10].outcome, msg::DeliveryOutcome::temporary_failure);
  ASSERT_TRUE(deliver({"b@relay.test"}, 2));
  auto results = report(2);
  EXPECT_EQ(results[10].outcome, msg::DeliveryOutcome::temporary_failure);
  EXPECT_GT(results[10].retry_after, 4u * 3600 - 60);
  EXPECT_LE(results[10].retry_after, 4u * 3600);
  EXPECT_NE(results[10].detail.find("suspended by rule yahoo-tss04"), std::string::npos)
      << results[10].detail;
  EXPECT_EQ(sink.connections(), 1);
  EXPECT_TRUE(sink.arrivals().empty());
  EXPECT_NE(show_relays().find("suspended by rule yahoo-tss04"), std::string::npos);
}

}  // namespace
}  // namespace postern::mta
