// Group commit: makes messages durable on a worker thread (common/worker.hpp) so the event
// loop never waits for a disk. Every job that arrives while a batch is being synced joins the
// next batch, and a batch shares one fsync of the queue directory. Results come back on the
// event loop in submission order; a job's callback runs only after its batch's directory fsync.
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

  // The files are NewMessage's ours and envelope.
  void submit(Envelope envelope, UniqueFd data_fd, UniqueFd envelope_fd, Done done);
  // Other blocking spool work (envelope updates, removals), in order, on the same thread.
  // Tasks change names in queue/: one directory fsync after a batch's tasks makes them all
  // durable before any of their callbacks runs.
  void run(std::function<Status()> task, std::function<void(const Status&)> done);
  size_t batches() const { return batches_; }
  size_t largest_batch() const { return largest_batch_; }

 private:
  struct Job {
    Envelope envelope;
    UniqueFd data_fd;
    UniqueFd envelope_fd;
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
