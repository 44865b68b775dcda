// Tests for queue/queue_process.cpp: a real QueueProcess (queue_test_fixture.hpp) taking
// messages from smtp: open, data descriptor, recipients, commit answered only once the commit
// record is in the spool; aborts; the relay check; refused and hostile input; peers lost and
// replaced; recovery of a spool left by a crash.
#include <gtest/gtest.h>

#include <set>

#include "tests/unit/queue/queue_test_fixture.hpp"

namespace postern::queue {
namespace {

using namespace test_support;

// The process exits with status 0 when the parent goes.
TEST_F(QueueTest, StartsAndStopsCleanly) {
  start_queue();
  const int status = queue_->stop();
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(QueueTest, CommitIsDurableBeforeTheAnswerAndTheMessageGoesToMda) {
  start_queue();
  const std::string id = open_and_write();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(
      smtp_->send(msg::MessageRecipients{.id = id, .recipients = {rcpt("alice@example.org")}}));
  ASSERT_TRUE(commit(id, std::time(nullptr), 1));
  auto result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->request_id, request_);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::committed) << result->message.reason;
  EXPECT_EQ(result->message.id, id);
  // By the time smtp hears "committed", the commit record is in the spool file.
  auto e = spooled_envelope(spool_.path(), id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sender, "bob@example.org");
  ASSERT_EQ(e->recipients.size(), 1u);
  EXPECT_EQ(e->recipients[0].address, "alice@example.org");
  EXPECT_EQ(e->size, std::string(kBody).size());

  auto job = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->message.id, id);
  EXPECT_EQ(job->message.sender, "bob@example.org");
  ASSERT_EQ(job->message.recipients.size(), 1u);
  EXPECT_EQ(job->message.recipients[0].address, "alice@example.org");
  ASSERT_TRUE(job->fd);
  const std::string data = job_text(*job);
  EXPECT_EQ(data, kBody);

  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(await_removed(id));
  // Nothing else went to mda: no notification was asked for.
  EXPECT_EQ(mda_->pending(), 0u);
}

TEST_F(QueueTest, AbortRemovesTheFileAndALaterCommitIsRefused) {
  start_queue();
  const std::string id = open_and_write();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(spooled(spool_.path(), id));
  ASSERT_TRUE(smtp_->send(msg::MessageAbort{.id = id}));
  ASSERT_TRUE(await_removed(id));
  ASSERT_TRUE(commit(id, std::time(nullptr), 1));
  auto result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::permanent_failure);
  EXPECT_FALSE(spooled(spool_.path(), id));
}

TEST_F(QueueTest, HostileInputIsRefusedWithoutLosingTheMessage) {
  start_queue();
  // A commit and an abort for ids never opened, and recipients for one, change nothing.
  ASSERT_TRUE(smtp_->send(
      msg::MessageRecipients{.id = "0123456789abcdef", .recipients = {rcpt("x@example.org")}}));
  ASSERT_TRUE(smtp_->send(msg::MessageAbort{.id = "0123456789abcdef"}));
  ASSERT_TRUE(commit("0123456789abcdef", std::time(nullptr), 1));
  auto unknown = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->message.outcome, msg::MessageOutcome::permanent_failure);

  auto first = submit({rcpt("alice@example.org"), rcpt("carol@example.org")});
  ASSERT_TRUE(first);
  ASSERT_EQ(first->message.outcome, msg::MessageOutcome::committed);
  const std::string id = first->message.id;
  // The same commit again: refused, and the committed message is untouched.
  ASSERT_TRUE(commit(id, std::time(nullptr), 2));
  auto again = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->message.outcome, msg::MessageOutcome::permanent_failure);
  EXPECT_TRUE(spooled(spool_.path(), id));

  auto job = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(job);
  ASSERT_EQ(job->message.recipients.size(), 2u);
  // Reports that match no job: another flight's serial, an unknown message, a recipient never
  // handed out. None may settle the message.
  msg::DeliveryReport stray{.id = id,
                            .results = {{.index = 0,
                                         .outcome = msg::DeliveryOutcome::delivered,
                                         .dsn = "2.0.0",
                                         .detail = "",
                                         .forward = {},
                                         .expanded = false}},
                            .last = true};
  ASSERT_TRUE(mda_->send(stray, job->request_id + 1));
  stray.id = "fedcba9876543210";
  ASSERT_TRUE(mda_->send(stray, job->request_id));
  msg::DeliveryReport beyond = stray;
  beyond.id = id;
  beyond.results[0].index = 9;
  beyond.last = false;
  ASSERT_TRUE(mda_->send(beyond, job->request_id));
  // The real report: alice delivered, carol deferred. Had a stray report counted, alice or
  // the message would be gone already, or carol's state would not be recorded.
  msg::DeliveryReport real{.id = id, .results = {}, .last = true};
  real.results.push_back({.index = 0,
                          .outcome = msg::DeliveryOutcome::delivered,
                          .dsn = "2.0.0",
                          .detail = "ok",
                          .forward = {},
                          .expanded = false});
  real.results.push_back({.index = 1,
                          .outcome = msg::DeliveryOutcome::temporary_failure,
                          .dsn = "4.2.2",
                          .detail = "over quota",
                          .forward = {},
                          .expanded = false});
  ASSERT_TRUE(mda_->send(real, job->request_id));
  ASSERT_TRUE(await_spool(id, [](const Envelope& e) {
    return e.recipients.size() == 2 && e.recipients[0].state == RecipientState::delivered;
  }));
  const Envelope e = *spooled_envelope(spool_.path(), id);
  EXPECT_EQ(e.recipients[1].state, RecipientState::pending);
  EXPECT_EQ(e.recipients[1].last_error, "4.2.2 over quota");
  EXPECT_EQ(e.recipients[0].attempts, 1u);
  EXPECT_EQ(e.recipients[1].attempts, 1u);
}

TEST_F(QueueTest, AnIncompleteRecipientListIsRefusedAndDiscarded) {
  start_queue();
  const std::string id = open_and_write();
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(
      smtp_->send(msg::MessageRecipients{.id = id, .recipients = {rcpt("alice@example.org")}}));
  ASSERT_TRUE(commit(id, std::time(nullptr), 2));
  auto result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::temporary_failure);
  EXPECT_TRUE(await_removed(id));
}

// A remote recipient needs lookup's word for the session; a refusal discards the message.
TEST_F(QueueTest, RelayCheckDecidesForRemoteRecipients) {
  start_queue();
  const std::string denied = open_and_write();
  ASSERT_TRUE(smtp_->send(
      msg::MessageRecipients{.id = denied, .recipients = {rcpt("eve@remote.example")}}));
  ASSERT_TRUE(commit(denied, std::time(nullptr), 1, 42));
  auto check = await<msg::RelayCheck>(*lookup_);
  ASSERT_TRUE(check);
  EXPECT_EQ(check->message.session, 42u);
  EXPECT_EQ(check->message.domains, std::vector<std::string>{"remote.example"});
  EXPECT_EQ(check->message.client_address, "192.0.2.1");
  // No answer before lookup's.
  EXPECT_FALSE(queue_->run_until([&] { return smtp_->has<msg::MessageResult>(); },
                                 std::chrono::milliseconds(200)));
  ASSERT_TRUE(lookup_->send(
      msg::RelayVerdict{.allowed = false, .temporary = false, .reason = "not authenticated"},
      check->request_id));
  auto result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::relay_denied);
  EXPECT_TRUE(await_removed(denied));

  const std::string allowed = open_and_write();
  ASSERT_TRUE(smtp_->send(
      msg::MessageRecipients{.id = allowed, .recipients = {rcpt("eve@remote.example")}}));
  ASSERT_TRUE(commit(allowed, std::time(nullptr), 1, 43));
  check = await<msg::RelayCheck>(*lookup_);
  ASSERT_TRUE(check);
  ASSERT_TRUE(lookup_->send(msg::RelayVerdict{.allowed = true, .temporary = false, .reason = ""},
                            check->request_id));
  result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::committed);
  EXPECT_TRUE(spooled(spool_.path(), allowed));
  // A remote recipient is the mta's: nothing goes to mda.
  EXPECT_TRUE(mda_gets_nothing(std::chrono::milliseconds(200)));
}

// lookup is asked about every remote domain of the message, not only the first: a relay
// domain first cannot carry another domain through. Beyond one frame's worth of domains the
// queue asks again, and the message is committed only when every answer allows it.
TEST_F(QueueTest, RelayCheckCoversEveryRemoteDomain) {
  start_queue();
  const std::string mixed = open_and_write();
  ASSERT_TRUE(smtp_->send(msg::MessageRecipients{
      .id = mixed,
      .recipients = {rcpt("alice@example.org"), rcpt("x@relay.example"), rcpt("y@relay.example"),
                     rcpt("victim@remote.example")}}));
  ASSERT_TRUE(commit(mixed, std::time(nullptr), 4, 42));
  auto check = await<msg::RelayCheck>(*lookup_);
  ASSERT_TRUE(check);
  EXPECT_EQ(check->message.domains, (std::vector<std::string>{"remote.example", "relay.example"}));
  ASSERT_TRUE(lookup_->send(msg::RelayVerdict{.allowed = false, .temporary = false, .reason = "no"},
                            check->request_id));
  auto result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::relay_denied);

  const std::string many = open_and_write();
  constexpr size_t kDomains = msg::kMaxRelayDomains + 1;
  for (size_t first = 0; first < kDomains; first += 100) {
    msg::MessageRecipients part{.id = many, .recipients = {}};
    for (size_t i = first; i < std::min(kDomains, first + 100); ++i)
      part.recipients.push_back(rcpt("x@d" + std::to_string(i) + ".example"));
    ASSERT_TRUE(smtp_->send(part));
  }
  ASSERT_TRUE(commit(many, std::time(nullptr), static_cast<uint32_t>(kDomains), 43));
  std::set<std::string> asked;
  check = await<msg::RelayCheck>(*lookup_);
  ASSERT_TRUE(check);
  EXPECT_EQ(check->message.domains.size(), msg::kMaxRelayDomains);
  asked.insert(check->message.domains.begin(), check->message.domains.end());
  ASSERT_TRUE(lookup_->send(msg::RelayVerdict{.allowed = true, .temporary = false, .reason = ""},
                            check->request_id));
  // Not committed on the first answer: the rest is asked about.
  check = await<msg::RelayCheck>(*lookup_);
  ASSERT_TRUE(check);
  asked.insert(check->message.domains.begin(), check->message.domains.end());
  EXPECT_EQ(asked.size(), kDomains);
  EXPECT_FALSE(smtp_->has<msg::MessageResult>());
  ASSERT_TRUE(lookup_->send(msg::RelayVerdict{.allowed = false, .temporary = false, .reason = "no"},
                            check->request_id));
  result = await<msg::MessageResult>(*smtp_);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->message.outcome, msg::MessageOutcome::relay_denied);
  EXPECT_TRUE(await_removed(many));
}

// A frame smtp may not send, or one that does not decode, closes smtp's channel and is
// reported to the parent (which restarts smtp); committed messages are not touched.
TEST_F(QueueTest, MalformedFrameFromSmtpClosesItsChannelOnly) {
  start_queue();
  auto committed = submit({rcpt("alice@example.org")});
  ASSERT_TRUE(committed);
  ASSERT_EQ(committed->message.outcome, msg::MessageOutcome::committed);
  // mda's report, sent on smtp's channel.
  ASSERT_TRUE(
      smtp_->send(msg::DeliveryReport{.id = committed->message.id, .results = {}, .last = true}));
  auto fault = await<msg::PeerFault>(queue_->parent());
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->message.peer, Role::smtp);
  EXPECT_TRUE(queue_->run_until([&] { return smtp_->closed(); }));
  EXPECT_TRUE(spooled(spool_.path(), committed->message.id));
  // A new smtp is served as before.
  smtp_ = &queue_->connect(Role::smtp);
  auto next = submit({rcpt("carol@example.org")});
  ASSERT_TRUE(next);
  EXPECT_EQ(next->message.outcome, msg::MessageOutcome::committed);
}

// smtp going away takes its unfinished messages with it; committed ones stay.
TEST_F(QueueTest, SmtpLostRemovesOpenMessagesOnly) {
  start_queue();
  auto committed = submit({rcpt("alice@example.org")});
  ASSERT_TRUE(committed);
  const std::string open = open_and_write();
  ASSERT_TRUE(spooled(spool_.path(), open));
  smtp_->close();
  EXPECT_TRUE(await_removed(open));
  EXPECT_TRUE(spooled(spool_.path(), committed->message.id));
}

// mda going away: what it had is handed to the next mda, and a late report from the old
// one's job counts for nothing.
TEST_F(QueueTest, MdaLostHandsTheJobToTheNextMda) {
  start_queue();
  auto job = submit_for_mda({rcpt("alice@example.org")});
  ASSERT_TRUE(job);
  mda_->close();
  PeerEnd& next = queue_->connect(Role::mda);
  auto again = await<msg::DeliverLocal>(next);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->message.id, job->message.id);
  EXPECT_NE(again->request_id, job->request_id);
  mda_ = &next;
  // The old job's report, late: it matches no flight, so the message is still pending.
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::permanent_failure, "5.1.1"));
  EXPECT_FALSE(queue_->run_until([&] { return !spooled(spool_.path(), job->message.id); },
                                 std::chrono::milliseconds(300)));
  EXPECT_EQ(spooled_envelope(spool_.path(), job->message.id)->recipients[0].state,
            RecipientState::pending);
  ASSERT_TRUE(report(*again, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(await_removed(job->message.id));
}

// A spool left by a crash: committed messages are delivered, files never committed removed,
// and a message whose retry lies ahead waits for it.
TEST_F(QueueTest, RecoversASpoolLeftByACrash) {
  std::string due;
  std::string later;
  std::string unfinished;
  {
    Spool spool(spool_.path());
    ASSERT_TRUE(spool.open().ok());
    due = spool_message(spool, 0, 2);
    later = spool_message(spool, std::time(nullptr) + 3600, 2);
    ASSERT_FALSE(due.empty());
    ASSERT_FALSE(later.empty());
    Result<NewMessage> m = spool.create();
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(write_all(m->ours.get(), "half a message").ok());
    unfinished = m->id;
  }
  start_queue();
  auto job = await<msg::DeliverLocal>(*mda_);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->message.id, due);
  EXPECT_FALSE(spooled(spool_.path(), unfinished));
  EXPECT_TRUE(mda_gets_nothing());
  const std::string shown = show_message(later);
  EXPECT_NE(shown.find("attempts=2"), std::string::npos) << shown;
  ASSERT_TRUE(report(*job, msg::DeliveryOutcome::delivered, "2.0.0"));
  EXPECT_TRUE(await_removed(due));
  EXPECT_TRUE(spooled(spool_.path(), later));
}

}  // namespace
}  // namespace postern::queue
