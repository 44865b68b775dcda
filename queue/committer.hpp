// Group commit: makes messages durable on a worker thread (common/worker.hpp) so the event
// loop never waits for a disk. Every job that arrives while a batch is being synced joins the
// next batch, and a batch shares its flushes (spool.hpp: the data, then the envelopes).
// Results come back on the event loop in submission order; a job's callback runs only once its
// message is durable.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "common/envelope.hpp"
#include "common/event.hpp"
#include "common/fd.hpp"
#include "common/result.hpp"
#include "common/worker.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

class Committer {
 public:
  using Done = std::function<void(const Envelope&, const Status&)>;

  // Starts the worker; call after privileges are dropped and the filter is installed.
  Committer(event_base* base, Spool& spool);
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  // The message's files (its ours and envelope; theirs is smtp's business).
  void submit(Envelope envelope, NewMessage files, Done done);
  // Other blocking spool work (envelope updates, removals), in order, on the same thread,
  // gathered for 10 ms and then run when no commit waits (or 10 ms later still): a client
  // waits for a commit, nobody for a task (measured: the removal of the message delivered
  // before, two unlinks and a directory fsync, took 0.75 ms in the same batch as the next
  // message's commit, before its 250). Tasks change names in queue/: one directory fsync
  // after a batch's tasks makes them all durable before any of their callbacks runs. A
  // delivery is recorded up to about 20 ms after mda reports it; a crash in that window
  // delivers it again, like one in the middle of the delivery.
  void run(std::function<Status()> task, std::function<void(const Status&)> done);
  // Makes the names made in queue/ until now durable (a task that does nothing but share its
  // batch's directory fsync).
  void sync_names(std::function<void(const Status&)> done) {
    run([] { return ok_status(); }, std::move(done));
  }
  size_t batches() const { return batches_; }
  size_t largest_batch() const { return largest_batch_; }

 private:
  struct Job {
    Envelope envelope;
    NewMessage files;
    Done done;
    std::function<Status()> task;  // set: not a commit
    std::function<void(const Status&)> task_done;
    Status status = ok_status();
  };

  void work(std::vector<std::unique_ptr<Job>>& batch);
  static void finish(Job& job);

  Spool& spool_;
  std::atomic<size_t> batches_ = 0;  // written by the worker only
  std::atomic<size_t> largest_batch_ = 0;
  BatchWorker<Job> worker_;  // last: its thread uses the members above
};

}  // namespace postern::queue
