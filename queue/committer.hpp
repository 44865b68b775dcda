// Group commit: makes messages durable on a worker thread (common/util/worker.hpp) so the event
// loop never waits for a disk; other spool work runs on a second one. Every job that arrives
// while a batch is being synced joins the next batch, and a batch shares its flush (spool.hpp:
// each data file with its commit record). Results come back on the event loop in submission
// order; a job's callback runs only once its message is durable.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "common/mail/envelope.hpp"
#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "common/util/worker.hpp"
#include "queue/spool.hpp"

namespace postern::queue {

class Committer {
 public:
  using Done = std::function<void(const Envelope&, const Status&)>;

  // Starts the workers; call after privileges are dropped and the filter is installed.
  Committer(event_base* base, Spool& spool);
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;
  ~Committer() = default;

  // The message's file (its ours; theirs is smtp's business).
  void submit(Envelope envelope, NewMessage files, Done done);
  // Other blocking spool work (envelope updates, removals, spare files) on a thread of its
  // own: a client waits for a commit, nobody for a task, and a task must not hold a commit up.
  // Tasks with the same key (a message's id) run in the order posted; a batch's tasks of
  // different keys run side by side on up to kTaskThreads threads, because on a disk that
  // discards freed blocks (ext4 -o discard) an unlink waits for the device: 3.6 ms each here,
  // one after another some 290 a second, which held relaying back to that rate
  // (tests/bench/relay_throughput.py, 50 sessions of single-recipient messages). Each delivered
  // message's removal is one or two unlinks (0.17 ms each on a filesystem mounted with discard) and
  // each spare two opens (0.3-0.5 ms each on ext4 without a journal after many unlinks); on the
  // commit thread, between commits, such work halved the accept+deliver throughput
  // (tests/bench/deliver_throughput.py, 50 sessions: 551-578 msg/s there, 1,069-1,129 msg/s here).
  // Tasks gather for 10 ms and change names in queue/: one directory fsync after a batch's tasks
  // makes them all durable before any of their callbacks runs. A delivery is recorded up to about
  // 10 ms after mda reports it (sooner when messages wait for it, see hurry()); a crash in that
  // window delivers it again, like one in the middle of the delivery, and the scheduler keeps the
  // message in delivery until then.
  void run(std::string key, std::function<Status()> task, std::function<void(const Status&)> done);
  static constexpr size_t kTaskThreads = 8;
  // The tasks posted so far go without gathering more: the caller waits for them.
  void hurry() { tasks_.hurry(); }
  size_t batches() const { return batches_; }
  size_t largest_batch() const { return largest_batch_; }

 private:
  struct Job {
    Envelope envelope;
    NewMessage files;
    Done done;
    std::string key;               // tasks: those with the same one run in order
    std::function<Status()> task;  // set: not a commit
    std::function<void(const Status&)> task_done;
    Status status = ok_status();
  };

  void commit(std::vector<std::unique_ptr<Job>>& batch);
  void run_tasks(std::vector<std::unique_ptr<Job>>& batch);
  static void finish(Job& job);

  Spool& spool_;
  std::atomic<size_t> batches_ = 0;  // written by the commits' worker only
  std::atomic<size_t> largest_batch_ = 0;
  // Last: their threads use the members above.
  BatchWorker<Job> tasks_;
  BatchWorker<Job> commits_;
};

}  // namespace postern::queue
