// Tests for queue/scheduler.cpp, driven through a real QueueProcess (queue_test_fixture.hpp):
// mda's reports and what follows them in the spool and on the wire: the retry schedule
// (first retry, doubling, cap), bounces, expiry, delay notices, the bound on messages in
// delivery, and what a restart or a crash keeps.
#include <gtest/gtest.h>

#include <set>

#include "tests/unit/queue/queue_test_fixture.hpp"

namespace postern::queue {
namespace {

using namespace test_support;

// Temporary failures: the first retry after retry_first, doubling, capped at retry_max; the
// schedule and attempts are in the spool, so a restart keeps them.
TEST_F(QueueTest, RetriesBackOffFromFirstDoublingToTheCap) {
  start_queue();
  auto result = submit({rcpt("alice@example.org")});
  ASSERT_TRUE(result);
  ASSERT_EQ(result->message.outcome, msg::MessageOutcome::committed);
  const std::string id = result->message.id;
  const uint32_t expected_wait[] = {kRetryFirst, 2 * kRetryFirst, kRetryMax, kRetryMax};
  for (uint32_t attempt = 1; attempt <= 4; ++attempt) {
    SCOPED_TRACE("attempt " + std::to_string(attempt));
    auto job = await<msg::DeliverLocal>(*mda_);
    ASSERT_TRUE(job);
    const int64_t before = std::time(nullptr);
    ASSERT_TRUE(report(*job, msg::DeliveryOutcome::temporary_failure, "4.3.0", "try later"));
    ASSERT_TRUE(
        await_spool(id, [&](const Envelope& e) { return e.recipients[0].attempts == attempt; }));
    const int64_t after = std::time(nullptr);
    const Envelope e = *spooled_envelope(spool_.path(), id);
    EXPECT_EQ(e.recipients[0].state, RecipientState::pending);
    EXPECT_EQ(e.recipients[0].last_error, "4.3.0 try later");
    EXPECT_GE(e.next_try, before + expected_wait[attempt - 1]);
    EXPECT_LE(e.next_try, after + expected_wait[attempt - 1]);
    // Not handed out again before its time...
    EXPECT_TRUE(mda_gets_nothing());
    EXPECT_NE(show_message(id).find("attempts=" + std::to_string(attempt)), std::string::npos);
    // ...unless smtpctl schedule says so.
    ASSERT_TRUE(control_->send(msg::CtlSchedule{.id = id}, ++request_));
    auto scheduled = await<msg::CtlResult>(*control_);
    ASSERT_TRUE(scheduled);
    EXPECT_TRUE(scheduled->message.ok) << scheduled->message.text;
  }
}

// A permanent failure removes the message and queues a bounce to the sender, which is local
// here and so goes to mda itself, from the null sender.
TEST_F(QueueTest, PermanentFailureBouncesToTheSender) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")}, std::time(nullptr), "bob@example.org");
  ASSERT_TRUE(job);
  const std::string id = job->message.id;
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1", "no such user"));
  auto bounce = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(bounce);
  EXPECT_NE(bounce->message.id, id);
  EXPECT_EQ(bounce->message.sender, "");
  ASSERT_EQ(bounce->message.recipients.size(), 1u);
  EXPECT_EQ(bounce->message.recipients[0].address, "bob@example.org");
  const std::string text = job_text(*bounce);
  EXPECT_NE(text.find("Status: 5.1.1"), std::string::npos) << text;
  EXPECT_NE(text.find("alice@example.org"), std::string::npos);
  EXPECT_TRUE(await_removed(id));
  EXPECT_TRUE(spooled(spool_.path(), bounce->message.id));
}

// A bounce to the null sender is never sent (RFC 5321 4.5.5).
TEST_F(QueueTest, NoBounceForTheNullSender) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")}, std::time(nullptr), "");
  ASSERT_TRUE(job);
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1", "no such user"));
  EXPECT_TRUE(await_removed(job->message.id));
  EXPECT_TRUE(mda_gets_nothing());
}

// A message older than limits.expire fails its pending recipients with 4.4.7 at its next
// settling, and the sender hears of it.
TEST_F(QueueTest, ExpiredMessageBouncesWith447) {
  start_queue({.spool_dir = "", .local_domains = {}, .hostname = "", .expire = 3600});
  auto job = submit_for_mda({rcpt("alice@example.org")}, std::time(nullptr) - 7200);
  ASSERT_TRUE(job);
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::temporary_failure, "4.3.0", "try later"));
  auto bounce = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(bounce);
  const std::string text = job_text(*bounce);
  EXPECT_NE(text.find("Status: 4.4.7"), std::string::npos) << text;
  EXPECT_TRUE(await_removed(job->message.id));
}

// After limits.delay_warning a sender that asked for NOTIFY=DELAY is told, once; the message
// stays queued.
TEST_F(QueueTest, DelayWarningOnceForNotifyDelay) {
  start_queue({.spool_dir = "", .local_domains = {}, .hostname = "", .delay_warning = 3600});
  Recipient alice = rcpt("alice@example.org");
  alice.notify.delay = true;
  alice.notify.failure = true;
  auto job = submit_for_mda({alice}, std::time(nullptr) - 7200);
  ASSERT_TRUE(job);
  const std::string id = job->message.id;
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::temporary_failure, "4.2.2", "over quota"));
  auto notice = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(notice);
  const std::string text = job_text(*notice);
  EXPECT_NE(text.find("Action: delayed"), std::string::npos) << text;
  EXPECT_NE(text.find("Status: 4.2.2"), std::string::npos) << text;
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.delay_reported; }));
  EXPECT_EQ(spooled_envelope(spool_.path(), id)->recipients[0].state, RecipientState::pending);
  // The second failure tells nobody again.
  ASSERT_TRUE(control_->send(msg::CtlSchedule{.id = id}, ++request_));
  auto again = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->message.id, id);
  ASSERT_TRUE(report(*again, msg::DeliveryOutcome::temporary_failure, "4.2.2", "over quota"));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.recipients[0].attempts == 2; }));
  EXPECT_TRUE(mda_gets_nothing());
}

// The schedule is in the spool: a queue started again after a temporary failure waits out the
// retry delay rather than delivering at once.
TEST_F(QueueTest, RestartKeepsTheRetrySchedule) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")});
  ASSERT_TRUE(job);
  const std::string id = job->message.id;
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::temporary_failure, "4.3.0", "try later"));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.recipients[0].attempts == 1; }));
  const int64_t next_try = spooled_envelope(spool_.path(), id)->next_try;
  ASSERT_EQ(queue_->stop(), 0);

  start_queue();
  EXPECT_TRUE(mda_gets_nothing(std::chrono::milliseconds(500)));
  const std::string shown = show_message(id);
  EXPECT_NE(shown.find("next try: " + std::to_string(next_try)), std::string::npos) << shown;
  EXPECT_NE(shown.find("attempts=1"), std::string::npos) << shown;
}

// A crash while mda holds a job: the outcome never reached the spool, so the next queue hands
// the message out again (delivered at least once, never lost).
TEST_F(QueueTest, CrashDuringDeliveryHandsTheMessageOutAgain) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")});
  ASSERT_TRUE(job);
  queue_->crash();

  start_queue();
  auto again = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->message.id, job->message.id);
  // Counted as tried once it is in mda's hands, in memory; the crash lost that count.
  ASSERT_TRUE(report(*again, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(await_removed(job->message.id));
}

// At most limits.in_delivery messages are at mda at once; the rest wait, and each outcome
// recorded lets the next one go.
class InDelivery : public QueueTest, public ::testing::WithParamInterface<uint32_t> {};

TEST_P(InDelivery, AtMostTheBoundIsInDeliveryAndTheRestFollow) {
  const size_t bound = GetParam();
  const size_t total = bound + 3;
  {
    Spool spool(spool_.path());
    ASSERT_TRUE(spool.open().ok());
    for (size_t i = 0; i < total; ++i) ASSERT_FALSE(spool_message(spool, 0).empty());
  }
  queue::Settings settings;
  if (bound != settings.in_delivery) settings.in_delivery = static_cast<uint32_t>(bound);
  start_queue(settings);
  std::vector<Received<msg::DeliverLocal>> jobs;
  auto collect = [&] {
    while (auto job = mda_->take<msg::DeliverLocal>()) jobs.push_back(std::move(*job));
  };
  ASSERT_TRUE(queue_->run_until([&] {
    collect();
    return jobs.size() >= bound;
  }));
  EXPECT_FALSE(queue_->run_until(
      [&] {
        collect();
        return jobs.size() > bound;
      },
      std::chrono::milliseconds(300)));
  ASSERT_EQ(jobs.size(), bound);
  for (size_t i = 0; i < 3; ++i)
    ASSERT_TRUE(report(jobs[i], msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(queue_->run_until([&] {
    collect();
    return jobs.size() == total;
  }));
  std::set<std::string> ids;
  for (const auto& j : jobs) ids.insert(j.message.id);
  EXPECT_EQ(ids.size(), total);
}

// The default, and a bound set in smtpd.yaml.
INSTANTIATE_TEST_SUITE_P(Bounds, InDelivery, ::testing::Values(queue::Settings{}.in_delivery, 5u));

// smtpctl pause holds every local delivery, resume sends what is due.
TEST_F(QueueTest, PauseHoldsDeliveriesUntilResumed) {
  start_queue();
  ASSERT_TRUE(control_->send(msg::CtlPause{.pause = true}, ++request_));
  ASSERT_TRUE(await<msg::CtlResult>(*control_));
  auto result = submit({rcpt("alice@example.org")});
  ASSERT_TRUE(result);
  ASSERT_EQ(result->message.outcome, msg::MessageOutcome::committed);
  EXPECT_TRUE(mda_gets_nothing());
  ASSERT_TRUE(control_->send(msg::CtlPause{.pause = false}, ++request_));
  auto job = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->message.id, result->message.id);
}

// An alias that forwards elsewhere adds the addresses as new recipients of the message, for
// the mta, keeping the original recipient as ORCPT; mda gets nothing more.
TEST_F(QueueTest, ForwardedAddressesBecomeRecipients) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")});
  ASSERT_TRUE(job);
  const std::string id = job->message.id;
  msg::DeliveryReport r{.id = id, .results = {}, .last = true};
  r.results.push_back({.index = 0,
                       .outcome = msg::DeliveryOutcome::delivered,
                       .dsn = "2.0.0",
                       .detail = "forwarded",
                       .forward = {"alice@remote.example"},
                       .expanded = false});
  ASSERT_TRUE(mda_->send(r, job->request_id));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.recipients.size() == 2; }));
  const Envelope e = *spooled_envelope(spool_.path(), id);
  EXPECT_EQ(e.recipients[0].state, RecipientState::delivered);
  EXPECT_EQ(e.recipients[1].address, "alice@remote.example");
  EXPECT_EQ(e.recipients[1].state, RecipientState::pending);
  EXPECT_EQ(e.recipients[1].orcpt, "alice@example.org");
  EXPECT_TRUE(mda_gets_nothing());
}

// smtpctl remove takes a message out of the spool without delivering it.
TEST_F(QueueTest, RemoveTakesTheMessageOut) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")});
  ASSERT_TRUE(job);
  ASSERT_TRUE(control_->send(msg::CtlRemove{.id = job->message.id}, ++request_));
  auto removed = await<msg::CtlResult>(*control_);
  ASSERT_TRUE(removed);
  EXPECT_TRUE(removed->message.ok);
  EXPECT_TRUE(await_removed(job->message.id));
  // mda's late report finds nothing, and nothing is bounced.
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1"));
  EXPECT_TRUE(mda_gets_nothing());
  ASSERT_TRUE(control_->send(msg::CtlRemove{.id = "0123456789abcdef"}, ++request_));
  auto unknown = await<msg::CtlResult>(*control_);
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->message.ok);
}

}  // namespace
}  // namespace postern::queue
