// Tests for queue/scheduler.cpp, driven through a real QueueProcess (queue_test_fixture.hpp):
// mda's and mta's reports and what follows them in the spool and on the wire: the retry
// schedule (first retry, doubling, cap, a destination's retry_after), bounces and their
// text, expiry, delay notices, the bounds on messages at mda and at mta, pause and resume,
// hostile reports, and what a restart or a crash (of the queue, mda or mta) keeps.
#include <gtest/gtest.h>

#include <fcntl.h>

#include <set>

#include "queue/views.hpp"
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
  // In words (UTC), as show envelope writes times.
  EXPECT_NE(shown.find("next try: " + utc_time(next_try)), std::string::npos) << shown;
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
// the mta, keeping the original recipient as ORCPT; mda gets nothing more, mta gets them.
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
  // The new recipient is mta's, once the forward is recorded.
  auto remote = await<msg::DeliverRemote>(*mta_);
  ASSERT_TRUE(remote);
  EXPECT_EQ(remote->message.envelope.id, id);
  ASSERT_EQ(remote->message.recipients.size(), 1u);
  EXPECT_EQ(remote->message.recipients[0].index, 1u);
  EXPECT_EQ(remote->message.recipients[0].address, "alice@remote.example");
  EXPECT_EQ(remote->message.recipients[0].orcpt, "alice@example.org");
  ASSERT_TRUE(report(*remote, msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  EXPECT_TRUE(await_removed(id));
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

// ----- Remote recipients: the mta lane

using Jobs = std::pair<std::optional<Received<msg::DeliverRemote>>,
                       std::optional<Received<msg::DeliverLocal>>>;

// One message for alice@example.org (local, index 0) and eve@remote.example (remote, index 1):
// the job mta gets and the job mda gets.
class MixedTest : public QueueTest {
 protected:
  Jobs submit_mixed() {
    auto remote = submit_for_mta({rcpt("alice@example.org"), rcpt("eve@remote.example")});
    auto local = await<msg::DeliverLocal>(*mda_);
    return {std::move(remote), std::move(local)};
  }
};

// A remote recipient goes to mta with the MAIL facts and the message on a descriptor (mta
// never opens spool files); a delivery removes the message.
TEST_F(QueueTest, RemoteRecipientsGoToMtaWithTheMailFactsAndTheMessage) {
  start_queue();
  adjust_envelope_ = [](Envelope& e) {
    e.smtputf8 = true;
    e.body_8bit = true;
    e.ret = DsnRet::headers;
    e.envid = "QQ314159";
    e.auth_user = "bob";
  };
  Recipient eve = rcpt("eve@remote.example");
  eve.orcpt_type = "rfc822";
  eve.orcpt = "Eve@Remote.example";
  eve.notify = {.failure = true, .delay = true};
  auto job = submit_for_mta({eve, rcpt("mallory@other.example")});
  ASSERT_TRUE(job);
  const Envelope& facts = job->message.envelope;
  EXPECT_EQ(facts.sender, "bob@example.org");
  EXPECT_EQ(facts.size, kBody.size());
  EXPECT_TRUE(facts.smtputf8);
  EXPECT_TRUE(facts.body_8bit);
  EXPECT_EQ(facts.ret, DsnRet::headers);
  EXPECT_EQ(facts.envid, "QQ314159");
  // Nothing of how it arrived: mta needs none of it.
  EXPECT_EQ(facts.auth_user, "");
  EXPECT_EQ(facts.client_address, "");
  EXPECT_TRUE(facts.recipients.empty());
  ASSERT_EQ(job->message.recipients.size(), 2u);
  EXPECT_EQ(job->message.recipients[0].index, 0u);
  EXPECT_EQ(job->message.recipients[0].address, "eve@remote.example");
  EXPECT_EQ(job->message.recipients[0].orcpt, "Eve@Remote.example");
  EXPECT_EQ(job->message.recipients[0].notify, (DsnNotify{.failure = true, .delay = true}));
  EXPECT_EQ(job->message.recipients[1].address, "mallory@other.example");
  EXPECT_EQ(job_text(*job), kBody);
  // Read-only: mta cannot change the spool through it.
  ASSERT_TRUE(job->fd);
  EXPECT_EQ(fcntl(job->fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);
  EXPECT_TRUE(mda_gets_nothing(std::chrono::milliseconds(100)));
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::delivered, "2.0.0", "250 2.0.0 Ok: queued"));
  EXPECT_TRUE(await_removed(facts.id));
  EXPECT_EQ(mda_->pending(), 0u);  // no notification was asked for
}

// Local and remote recipients of one message are out at the same time, and both reports
// update the same envelope, whichever comes first.
TEST_F(MixedTest, MixedMessageGoesToMdaAndMtaAtOnce) {
  start_queue();
  auto [remote, local] = submit_mixed();
  ASSERT_TRUE(remote && local);
  const std::string id = local->message.id;
  ASSERT_EQ(remote->message.envelope.id, id);
  ASSERT_EQ(local->message.recipients.size(), 1u);
  EXPECT_EQ(local->message.recipients[0].index, 0u);
  ASSERT_EQ(remote->message.recipients.size(), 1u);
  EXPECT_EQ(remote->message.recipients[0].index, 1u);
  ASSERT_TRUE(report(*remote, msg::DeliveryOutcome::temporary_failure, "4.3.0",
                     "451 4.3.0 try again later"));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.recipients[1].attempts == 1; }));
  ASSERT_TRUE(report(*local, msg::DeliveryOutcome::delivered, "2.0.0"));
  ASSERT_TRUE(await_spool(
      id, [](const Envelope& e) { return e.recipients[0].state == RecipientState::delivered; }));
  const Envelope e = *spooled_envelope(spool_.path(), id);
  EXPECT_EQ(e.recipients[1].state, RecipientState::pending);
  EXPECT_EQ(e.recipients[1].last_error, "4.3.0 451 4.3.0 try again later");
  // The remote recipient's own retry: the local delivery did not send it again.
  EXPECT_TRUE(mta_gets_nothing());
  ASSERT_TRUE(control_->send(msg::CtlSchedule{.id = id}, ++request_));
  auto again = await<msg::DeliverRemote>(*mta_);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->message.recipients.size(), 1u);
  EXPECT_EQ(again->message.recipients[0].index, 1u);
  ASSERT_TRUE(report(*again, msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  EXPECT_TRUE(await_removed(id));
  EXPECT_TRUE(mda_gets_nothing());
}

// Per-recipient results: one delivered, one bounced, one deferred; a destination's
// retry_after holds the retry back beyond the queue's own back-off, and show queue says when.
TEST_F(QueueTest, RemoteResultsPerRecipientAndRetryAfterIsRespected) {
  start_queue();
  auto job =
      submit_for_mta({rcpt("a@remote.example"), rcpt("b@remote.example"), rcpt("c@remote.example")},
                     std::time(nullptr), "");
  ASSERT_TRUE(job);
  const std::string id = job->message.envelope.id;
  const int64_t before = std::time(nullptr);
  msg::DeliveryReport r{.id = id, .results = {}, .last = true};
  const std::string mx = "mx.remote.example[192.0.2.25]:25";
  r.results.push_back({.index = 0,
                       .outcome = msg::DeliveryOutcome::delivered,
                       .dsn = "2.0.0",
                       .detail = "250 2.0.0 ok",
                       .remote_mta = mx});
  r.results.push_back({.index = 1,
                       .outcome = msg::DeliveryOutcome::permanent_failure,
                       .dsn = "5.1.1",
                       .detail = "550 5.1.1 no such user",
                       .remote_mta = mx});
  r.results.push_back({.index = 2,
                       .outcome = msg::DeliveryOutcome::temporary_failure,
                       .dsn = "4.7.28",
                       .detail = "421 4.7.28 rate limited",
                       .remote_mta = mx,
                       .retry_after = 1800});
  ASSERT_TRUE(mta_->send(r, job->request_id));
  ASSERT_TRUE(await_spool(
      id, [](const Envelope& e) { return e.recipients[2].attempts == 1 && e.next_try != 0; }));
  const Envelope e = *spooled_envelope(spool_.path(), id);
  EXPECT_EQ(e.recipients[0].state, RecipientState::delivered);
  EXPECT_EQ(e.recipients[1].state, RecipientState::failed);
  EXPECT_EQ(e.recipients[2].state, RecipientState::pending);
  // Not after retry_first (60 s): after the 30 minutes the destination asked for.
  EXPECT_GE(e.next_try, before + 1800);
  EXPECT_LE(e.next_try, std::time(nullptr) + 1800);
  const std::string shown = show_queue();
  // (29m once a second has passed since the record.)
  const std::string line = "c@remote.example  pending  1 attempt  next try in ";
  const std::string error = "m  (4.7.28 421 4.7.28 rate limited)";
  EXPECT_TRUE(shown.find(line + "30" + error) != std::string::npos ||
              shown.find(line + "29" + error) != std::string::npos)
      << shown;
  EXPECT_NE(shown.find("b@remote.example  failed"), std::string::npos) << shown;
  EXPECT_TRUE(mta_gets_nothing());
  // (The null sender: the failure is bounced to nobody.)
  EXPECT_TRUE(mda_gets_nothing(std::chrono::milliseconds(100)));
}

// A deferral without retry_after takes the queue's own back-off.
TEST_F(QueueTest, RemoteDeferralWithoutRetryAfterBacksOffAsLocal) {
  start_queue();
  auto job = submit_for_mta({rcpt("eve@remote.example")});
  ASSERT_TRUE(job);
  const std::string id = job->message.envelope.id;
  const int64_t before = std::time(nullptr);
  ASSERT_TRUE(
      report(*job, msg::DeliveryOutcome::temporary_failure, "4.4.1", "connection refused", 0, ""));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) { return e.recipients[0].attempts == 1; }));
  const Envelope e = *spooled_envelope(spool_.path(), id);
  EXPECT_GE(e.next_try, before + kRetryFirst);
  EXPECT_LE(e.next_try, std::time(nullptr) + kRetryFirst);
}

// A remote failure's DSN names the server and quotes its reply; the bounce to a local sender
// goes to mda.
TEST_F(QueueTest, RemoteBounceQuotesTheServersReply) {
  start_queue();
  auto job = submit_for_mta({rcpt("eve@remote.example")}, std::time(nullptr), "bob@example.org");
  ASSERT_TRUE(job);
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1",
                     "550 5.1.1 <eve@remote.example>: Recipient address rejected", 0,
                     "mx.remote.example[192.0.2.25]:25"));
  auto bounce = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(bounce);
  EXPECT_EQ(bounce->message.sender, "");
  ASSERT_EQ(bounce->message.recipients.size(), 1u);
  EXPECT_EQ(bounce->message.recipients[0].address, "bob@example.org");
  const std::string text = job_text(*bounce);
  EXPECT_NE(text.find("Final-Recipient: rfc822; eve@remote.example\r\n"
                      "Action: failed\r\n"
                      "Status: 5.1.1\r\n"
                      "Remote-MTA: dns; mx.remote.example\r\n"
                      "Diagnostic-Code: smtp; 550 5.1.1 <eve@remote.example>: Recipient address "
                      "rejected\r\n"),
            std::string::npos)
      << text;
  EXPECT_TRUE(await_removed(job->message.envelope.id));
}

// A bounce to a remote sender is mail for mta like any other.
TEST_F(QueueTest, BounceToARemoteSenderGoesToMta) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")}, std::time(nullptr), "eve@remote.example");
  ASSERT_TRUE(job);
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1", "no such user"));
  auto bounce = await<msg::DeliverRemote>(*mta_);
  ASSERT_TRUE(bounce);
  EXPECT_EQ(bounce->message.envelope.sender, "");
  ASSERT_EQ(bounce->message.recipients.size(), 1u);
  EXPECT_EQ(bounce->message.recipients[0].address, "eve@remote.example");
  EXPECT_NE(job_text(*bounce).find("Status: 5.1.1"), std::string::npos);
}

// mta lost with jobs in hand: those, and only those, go again to the next mta; the old
// mta's late report counts for nothing.
TEST_F(QueueTest, MtaLostResendsWhatWasInFlightOnceMtaIsBack) {
  start_queue();
  auto done = submit_for_mta({rcpt("a@remote.example")});
  ASSERT_TRUE(done);
  ASSERT_TRUE(report(*done, msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  ASSERT_TRUE(await_removed(done->message.envelope.id));
  auto job = submit_for_mta({rcpt("b@remote.example"), rcpt("c@remote.example")});
  ASSERT_TRUE(job);
  const std::string id = job->message.envelope.id;
  mta_->close();
  // No mta: nothing goes, and the message waits.
  EXPECT_FALSE(queue_->run_until([&] { return !spooled(spool_.path(), id); },
                                 std::chrono::milliseconds(300)));
  PeerEnd& next = queue_->connect(Role::mta);
  auto again = await<msg::DeliverRemote>(next);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->message.envelope.id, id);
  EXPECT_NE(again->request_id, job->request_id);
  ASSERT_EQ(again->message.recipients.size(), 2u);
  EXPECT_EQ(again->message.recipients[0].address, "b@remote.example");
  EXPECT_EQ(again->message.recipients[1].address, "c@remote.example");
  // Only what was in flight: the message delivered before the crash is not sent again.
  EXPECT_FALSE(queue_->run_until([&] { return next.has<msg::DeliverRemote>(); },
                                 std::chrono::milliseconds(300)));
  mta_ = &next;
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1", "550 late"));
  EXPECT_FALSE(queue_->run_until([&] { return !spooled(spool_.path(), id); },
                                 std::chrono::milliseconds(300)));
  ASSERT_TRUE(report(*again, msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  EXPECT_TRUE(await_removed(id));
  EXPECT_EQ(mda_->pending(), 0u);  // nothing bounced
}

// A hostile or confused mta: reports for an unknown message, for a job that is not its own,
// for recipients its job did not carry, or adding recipients, change nothing; its real report
// still counts.
TEST_F(MixedTest, HostileMtaReportsAreRefusedWithoutHarm) {
  start_queue();
  auto [remote, local] = submit_mixed();
  ASSERT_TRUE(remote && local);
  const std::string id = local->message.id;
  auto result = [](uint32_t index, msg::DeliveryOutcome outcome) {
    return msg::DeliveryResult{.index = index,
                               .outcome = outcome,
                               .dsn = "5.1.1",
                               .detail = "550 no",
                               .forward = {},
                               .expanded = false};
  };
  // An unknown message.
  ASSERT_TRUE(mta_->send(
      msg::DeliveryReport{.id = "0123456789abcdef",
                          .results = {result(0, msg::DeliveryOutcome::permanent_failure)},
                          .last = true},
      remote->request_id));
  // mda's job, under mda's request id: not mta's to answer.
  ASSERT_TRUE(mta_->send(
      msg::DeliveryReport{
          .id = id, .results = {result(0, msg::DeliveryOutcome::permanent_failure)}, .last = false},
      local->request_id));
  // Its own job, but for the local recipient and for an index nobody has.
  ASSERT_TRUE(
      mta_->send(msg::DeliveryReport{.id = id,
                                     .results = {result(0, msg::DeliveryOutcome::permanent_failure),
                                                 result(99999, msg::DeliveryOutcome::delivered)},
                                     .last = false},
                 remote->request_id));
  // Its own recipient "delivered" with a forward: mta adds no recipients.
  msg::DeliveryResult forwarding = result(1, msg::DeliveryOutcome::delivered);
  forwarding.forward = {"x@elsewhere.example"};
  forwarding.expanded = true;
  ASSERT_TRUE(mta_->send(msg::DeliveryReport{.id = id, .results = {forwarding}, .last = true},
                         remote->request_id));
  ASSERT_TRUE(await_spool(
      id, [](const Envelope& e) { return e.recipients[1].state == RecipientState::delivered; }));
  Envelope e = *spooled_envelope(spool_.path(), id);
  ASSERT_EQ(e.recipients.size(), 2u);
  EXPECT_EQ(e.recipients[0].state, RecipientState::pending);
  // The same recipient reported twice: the second is refused (its job has settled).
  ASSERT_TRUE(report(*remote, msg::DeliveryOutcome::permanent_failure, "5.1.1", "550 no"));
  // The queue is fine: mda's real report still completes the message, nothing was bounced.
  ASSERT_TRUE(report(*local, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(await_removed(id));
  EXPECT_TRUE(mda_gets_nothing());
  EXPECT_FALSE(queue_->parent().has<msg::PeerFault>());
}

// At most limits.in_relay messages are at mta at once, apart from limits.in_delivery: a full
// mta lane does not hold local delivery back, and each remote outcome lets the next one go.
TEST_F(QueueTest, InRelayBoundsMessagesAtMtaApartFromLocalOnes) {
  std::set<std::string> remote_ids;
  std::string local_id;
  {
    Spool spool(spool_.path());
    ASSERT_TRUE(spool.open().ok());
    for (int i = 0; i < 4; ++i)
      remote_ids.insert(spool_message(spool, 0, 0, "eve" + std::to_string(i) + "@remote.example"));
    local_id = spool_message(spool, 0);
  }
  queue::Settings settings;
  settings.in_relay = 2;
  settings.in_delivery = 1;
  start_queue(settings);
  std::vector<Received<msg::DeliverRemote>> jobs;
  auto collect = [&] {
    while (auto job = mta_->take<msg::DeliverRemote>()) jobs.push_back(std::move(*job));
  };
  ASSERT_TRUE(queue_->run_until([&] {
    collect();
    return jobs.size() >= 2;
  }));
  // The local message has its own place.
  auto local = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(local);
  EXPECT_EQ(local->message.id, local_id);
  EXPECT_FALSE(queue_->run_until(
      [&] {
        collect();
        return jobs.size() > 2;
      },
      std::chrono::milliseconds(300)));
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_NE(show_queue().find("next try now"), std::string::npos);
  ASSERT_TRUE(report(jobs[0], msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  ASSERT_TRUE(queue_->run_until([&] {
    collect();
    return jobs.size() == 3;
  }));
  ASSERT_TRUE(report(jobs[1], msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  ASSERT_TRUE(queue_->run_until([&] {
    collect();
    return jobs.size() == 4;
  }));
  std::set<std::string> ids;
  for (const auto& j : jobs) ids.insert(j.message.envelope.id);
  EXPECT_EQ(ids, remote_ids);
}

// A message whose remote recipients fill more than one frame goes to mta as one job: frames
// under one request id, all but the last saying more follow, handed out together; mta's one
// report settles it. One with more than a job's frames goes as several jobs.
TEST_F(QueueTest, ARemoteMessageTooBigForAFrameGoesAsOneJob) {
  for (const size_t recipients : {1000, 12000}) {
    std::string id;
    {
      Spool spool(spool_.path());
      ASSERT_TRUE(spool.open().ok());
      Result<NewMessage> m = spool.create();
      ASSERT_TRUE(m.ok());
      ASSERT_TRUE(write_all(m->ours.get(), kBody).ok());
      Envelope e;
      e.id = m->id;
      e.arrival = std::time(nullptr);
      e.sender = "bob@example.org";
      for (size_t i = 0; i < recipients; ++i)
        e.recipients.push_back(rcpt("a-rather-long-local-part-" + std::to_string(i) +
                                    "@destination-" + std::to_string(i % 3) + ".remote.example"));
      ASSERT_TRUE(spool.commit(e, m.value()).ok());
      id = m->id;
    }
    start_queue();
    // Frames until every recipient is in one: each job ends with a frame without more.
    std::vector<Received<msg::DeliverRemote>> frames;
    std::set<uint32_t> indexes;
    ASSERT_TRUE(queue_->run_until([&] {
      while (auto frame = mta_->take<msg::DeliverRemote>()) {
        for (const auto& r : frame->message.recipients) indexes.insert(r.index);
        frames.push_back(std::move(*frame));
      }
      return indexes.size() == recipients && !frames.back().message.more;
    }));
    std::vector<std::vector<uint32_t>> jobs(1);
    for (const auto& frame : frames) {
      EXPECT_EQ(frame.request_id, frames[0].request_id);
      EXPECT_EQ(frame.message.envelope.id, id);
      for (const auto& r : frame.message.recipients) jobs.back().push_back(r.index);
      if (!frame.message.more) jobs.emplace_back();
    }
    jobs.pop_back();
    EXPECT_GE(frames.size(), 2u);
    EXPECT_EQ(jobs.size(), recipients == 1000 ? 1u : 2u);
    // One report per job, in frames of 250 results as mta cuts it; only its last says so.
    for (const std::vector<uint32_t>& job : jobs)
      for (size_t i = 0; i < job.size(); i += 250) {
        msg::DeliveryReport r{.id = id, .results = {}, .last = i + 250 >= job.size()};
        for (size_t k = i; k < i + 250 && k < job.size(); ++k)
          r.results.push_back({.index = job[k],
                               .outcome = msg::DeliveryOutcome::delivered,
                               .dsn = "2.0.0",
                               .detail = "250 ok",
                               .forward = {},
                               .expanded = false,
                               .remote_mta = "mx.remote.example[192.0.2.25]:25"});
        ASSERT_TRUE(mta_->send(r, frames[0].request_id));
      }
    EXPECT_TRUE(await_removed(id));
    queue_.reset();  // the next round starts a new one on the same spool
  }
}

// smtpctl pause mta holds remote hand-offs only; resume sends what is due.
TEST_F(QueueTest, PauseMtaHoldsRemoteHandOffsOnly) {
  start_queue();
  ASSERT_TRUE(control_->send(msg::CtlPause{.target = Role::mta, .pause = true}, ++request_));
  auto paused = await<msg::CtlResult>(*control_);
  ASSERT_TRUE(paused);
  EXPECT_EQ(paused->message.text, "mta paused");
  const std::string id = transact({rcpt("alice@example.org"), rcpt("eve@remote.example")},
                                  std::time(nullptr), "bob@example.org");
  ASSERT_TRUE(vouch());
  // Local delivery carries on.
  auto local = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(local);
  ASSERT_TRUE(report(*local, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(mta_gets_nothing());
  EXPECT_NE(show_queue().find("eve@remote.example  pending  0 attempts  next try after smtpctl "
                              "resume mta (paused)"),
            std::string::npos);
  ASSERT_TRUE(control_->send(msg::CtlPause{.target = Role::mta, .pause = false}, ++request_));
  auto remote = await<msg::DeliverRemote>(*mta_);
  ASSERT_TRUE(remote);
  EXPECT_EQ(remote->message.envelope.id, id);
  ASSERT_TRUE(report(*remote, msg::DeliveryOutcome::delivered, "2.0.0", "250 ok"));
  EXPECT_TRUE(await_removed(id));
}

// Expiry covers remote recipients: a deferral past limits.expire bounces them with 4.4.7.
TEST_F(QueueTest, ExpiredRemoteRecipientBouncesWith447) {
  start_queue({.spool_dir = "", .local_domains = {}, .hostname = "", .expire = 3600});
  auto job = submit_for_mta({rcpt("eve@remote.example")}, std::time(nullptr) - 7200);
  ASSERT_TRUE(job);
  ASSERT_TRUE(
      report(*job, msg::DeliveryOutcome::temporary_failure, "4.4.1", "connection refused", 0, ""));
  auto bounce = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(bounce);
  const std::string text = job_text(*bounce);
  EXPECT_NE(text.find("Final-Recipient: rfc822; eve@remote.example"), std::string::npos) << text;
  EXPECT_NE(text.find("Status: 4.4.7"), std::string::npos) << text;
  EXPECT_TRUE(await_removed(job->message.envelope.id));
}

// Delay notices cover remote recipients too.
TEST_F(QueueTest, DelayWarningForARemoteRecipient) {
  start_queue({.spool_dir = "", .local_domains = {}, .hostname = "", .delay_warning = 3600});
  Recipient eve = rcpt("eve@remote.example");
  eve.notify = {.failure = true, .delay = true};
  auto job = submit_for_mta({eve}, std::time(nullptr) - 7200);
  ASSERT_TRUE(job);
  ASSERT_TRUE(
      report(*job, msg::DeliveryOutcome::temporary_failure, "4.2.0", "452 4.2.0 mailbox busy"));
  auto notice = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(notice);
  const std::string text = job_text(*notice);
  EXPECT_NE(text.find("Action: delayed"), std::string::npos) << text;
  EXPECT_NE(text.find("Status: 4.2.0"), std::string::npos) << text;
  EXPECT_TRUE(spooled(spool_.path(), job->message.envelope.id));
}

}  // namespace
}  // namespace postern::queue
