// The mda process's core: takes DeliverLocal jobs from the queue through the ChildRuntime it is
// given, asks lookup for each recipient's route, delivers to each distinct destination once
// and reports one result per recipient. main.cpp only starts it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ipc/child.hpp"
#include "common/util/event.hpp"
#include "common/util/worker.hpp"
#include "mda/api.hpp"
#include "mda/destination.hpp"
#include "mda/distinct.hpp"
#include "mda/lmtp.hpp"
#include "mda/maildir.hpp"
#include "mda/reported.hpp"
#include "queue/api.hpp"
#include "smtpd/api.hpp"

namespace postern::mda {

// Recipients whose delivery was reported lately, kept for a queue that restarts (Reported).
// The queue keeps at most 128 messages in delivery, whose outcomes may not be in its spool yet:
// many times that, and a fanout's thousands of recipients.
constexpr size_t kReportedMessages = 1024;
constexpr size_t kReportedRecipients = 20000;

// One DeliverLocal from the queue, from its routes to its report.
struct Job {
  uint64_t id = 0;
  uint32_t request_id = 0;  // the queue's
  msg::DeliverLocal message;
  UniqueFd fd;
  MessageData data() const { return {fd.get(), message.size}; }
  std::vector<std::optional<msg::LocalRoute>> routes;  // per recipient, as lookup answers
  size_t routes_awaited = 0;                           // ResolveLocal batches unanswered
  bool awaiting_lookup = false;  // its routes could not be asked: lookup was away
  std::vector<bool> reported;    // per recipient: delivered and reported before (Reported)
  std::vector<msg::DeliveryResult> outcomes;  // per recipient, for the queue
  // Each distinct destination once (distinct.hpp), and its result as its method answers:
  // Publication's and Answer's delivery_index and HelperTask's delivery are indexes into
  // these. finish() gives each delivery's result to every recipient sharing it.
  std::vector<DistinctDelivery> deliveries;
  std::vector<msg::DeliveryResult> results;
  // Deliveries that answer later: helpers', mbox and LMTP ones, and Maildir files on their way.
  size_t pending = 0;
  // The message alone, sealed, for its helpers (sealed_copy): made once, lent to each.
  UniqueFd helper_copy;
};

// A Maildir delivery of a job.
struct Publication {
  uint64_t job = 0;
  size_t delivery_index = 0;  // into Job::deliveries
  MaildirDelivery delivery;   // its message is the job's descriptor, open while the job is pending
};

// Maildir deliveries on their way to new/: staged (files created and written) on one thread,
// then published (flushed and named) on another, so that in a fanout one chunk's files are
// written while the previous chunk's flushes wait for the disk. In a 10,000-user fanout
// staging is about half the time and mostly CPU, the flushes the other half; done one after
// the other on the event loop they took 0.94-1.02 s, pipelined 0.71-0.89 s. The publisher
// takes everything staged while it was busy as one batch, sharing the flushes.
struct MaildirBatch {
  std::vector<Publication> publications;
  std::vector<Result<StagedMaildir>> staged;  // by the stage thread, one per publication
  std::vector<Result<std::string>> results;   // by the publish thread, one per publication
};
using MaildirWorker = BatchWorker<MaildirBatch>;

// The outcome of a delivery that answers later.
struct Answer {
  size_t delivery_index = 0;  // into Job::deliveries
  msg::DeliveryOutcome outcome = msg::DeliveryOutcome::temporary_failure;
  std::string dsn;
  std::string detail;
};

// An mbox delivery. It may wait on others (a reader holding the box locked), so it runs on a
// thread of its own while the loop goes on with Maildirs, helpers and LMTP (which runs on the
// loop itself, lmtp.hpp, and never shares this thread).
struct OutsideDelivery {
  uint64_t job = 0;
  std::function<std::vector<Answer>()> run;  // on the thread; the job's fd stays open meanwhile
  std::vector<Answer> answers;
};

// A delivery for a helper, waiting for its turn or for its answer.
struct HelperTask {
  uint64_t job = 0;
  size_t delivery = 0;  // into Job::deliveries
  msg::HelperDeliver request;
};

class MdaProcess {
 public:
  explicit MdaProcess(ChildRuntime& runtime);

 private:
  // --- routes ---------------------------------------------------------------------------------

  void accept(msg::Incoming& in, msg::DeliverLocal& m);

  // Asks lookup for every recipient's routes, in batches; while lookup is away (restarting)
  // the job waits for it (lookup_back) rather than deferring its recipients for the queue's
  // retry delay.
  void ask_routes(Job& j);

  void forget_questions(uint64_t job);
  void await_lookup(Job& j);
  void on_routes(msg::Incoming& in, msg::LocalRoutes& m);

  // Questions lookup took with it are asked again when it is back (lookup_back).
  void lookup_lost();

  void lookup_back();

  // Lookup stayed away: the recipients are deferred (4.3.0), and the queue's retry schedule
  // takes over.
  void stop_awaiting_lookup();

  std::vector<Job*> jobs_awaiting_lookup();

  // The queue went away, and the one that takes its place hands out again every message it
  // finds in the spool: a job that has delivered nothing yet (its routes still being asked)
  // is dropped, not delivered a second time. Deliveries under way finish; the new queue
  // ignores their reports (they answer none of its jobs), and its own jobs for those recipients
  // are answered from what was reported (reported_).
  void queue_lost();

  // --- deliveries -----------------------------------------------------------------------------

  void deliver(Job& j);

  // Every recipient gets the results of the deliveries it shares. A forward goes with the
  // first of its recipients that is delivered in full, so that it is handed on once and only
  // by a recipient whose other mail is done (a retried recipient forwards on its retry).
  static void share_results(Job& j);

  // The Maildir files of this loop turn: a few are delivered at once, here; more go to the
  // threads (MaildirBatch).
  void publish();

  // On the stage thread: writes the files of every job posted since the last batch, handing
  // them to the publisher a chunk at a time, so that it flushes one chunk while the next is
  // written.
  static void stage(MaildirWorker::Batch& batch, MaildirWorker& publisher);

  // On the publish thread: what was staged since the last batch is made durable and visible
  // together (publish_staged).
  static void publish_batch(MaildirWorker::Batch& batch);

  void on_published(MaildirBatch& done);
  void outside(Job& j, std::function<std::vector<Answer>()> run);
  void on_outside_answers(OutsideDelivery& d);

  // One of the job's pending deliveries has answered.
  void settle(Job& j);

  void finish(uint64_t id);

  // --- helpers --------------------------------------------------------------------------------

  // System users' deliveries run as the user, commands outside mda's sandbox: each is one
  // request to the parent, at most msg::kMaxHelpers at once; the rest wait here.
  // The parent asks lookup again where the recipient's mail goes: the first recipient whose
  // route named the destination is the one it is asked about.
  void to_helper(Job& j, size_t delivery, const msg::Destination& d);

  void ask_for_helpers();

  void helper_answered(uint32_t request, msg::DeliveryOutcome outcome, const std::string& dsn,
                       const std::string& detail);

  void complete(const HelperTask& task, msg::DeliveryOutcome outcome, const std::string& dsn,
                const std::string& detail);

  // time.M<usec>P<pid>Q<n>.host (the Maildir spec's modern unique name).
  std::string unique_name();

  ChildRuntime& runtime_;
  Settings settings_{.hostname = "localhost"};  // from the parent
  uint64_t deliveries_ = 0;
  uint64_t next_job_ = 1;
  uint32_t next_request_ = 1;
  std::map<uint64_t, std::unique_ptr<Job>> jobs_;
  Reported reported_{kReportedMessages, kReportedRecipients};
  std::map<uint32_t, std::pair<uint64_t, size_t>> resolving_;  // request -> job, next index
  std::deque<HelperTask> helper_waiting_;
  std::map<uint32_t, HelperTask> helper_in_flight_;  // by the request id to the parent
  std::vector<Publication> publishing_;              // until the end of this loop turn
  std::unique_ptr<Timer> publish_timer_;
  std::unique_ptr<Timer> lookup_wait_timer_;  // armed while jobs await lookup
  std::unique_ptr<LmtpDeliveries> lmtp_;      // the LMTP connections, on the loop
  // Declared last, destroyed first: their threads are done with the jobs' descriptors before
  // the jobs go (and the stager, which posts to the publisher, before the publisher).
  std::unique_ptr<BatchWorker<OutsideDelivery>> outside_;
  std::unique_ptr<MaildirWorker> publisher_;
  std::unique_ptr<MaildirWorker> stager_;
};

}  // namespace postern::mda
