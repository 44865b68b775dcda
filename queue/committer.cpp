// Group commit; see committer.hpp.
#include "queue/committer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "common/log.hpp"

namespace postern::queue {

Committer::Committer(event_base* base, Spool& spool) : spool_(spool) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) log::fatal("cannot create the commit pipe");
  wake_read_.reset(fds[0]);
  wake_write_.reset(fds[1]);
  watcher_ = std::make_unique<FdWatcher>(base, wake_read_.get(), [this] { deliver_results(); });
  worker_ = std::thread([this] { work(); });
}

Committer::~Committer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  worker_.join();
}

void Committer::submit(Envelope envelope, UniqueFd data_fd, UniqueFd envelope_fd, Done done) {
  auto job = std::make_unique<Job>();
  job->envelope = std::move(envelope);
  job->data_fd = std::move(data_fd);
  job->envelope_fd = std::move(envelope_fd);
  job->done = std::move(done);
  {
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Committer::run(std::function<Status()> task, std::function<void(const Status&)> done) {
  auto job = std::make_unique<Job>();
  job->task = std::move(task);
  job->task_done = std::move(done);
  {
    std::lock_guard lock(mutex_);
    pending_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Committer::work() {
  for (;;) {
    std::vector<std::unique_ptr<Job>> batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping with nothing left to do
      while (!pending_.empty()) {
        batch.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    // Stage every message, make them all durable at once, then give them their names.
    std::vector<Spool::StagedFiles> staged;
    for (auto& job : batch) {
      if (job->task) continue;
      job->status = spool_.stage(job->envelope, job->data_fd.get(), job->envelope_fd.get());
      if (job->status.ok()) staged.push_back({job->data_fd.get(), job->envelope_fd.get()});
    }
    if (!staged.empty()) {
      const Status synced = spool_.sync_staged(staged);
      for (auto& job : batch)
        if (!job->task && job->status.ok() && !synced.ok()) job->status = synced.error();
    }
    bool any_committed = false;
    for (auto& job : batch) {
      if (job->task || !job->status.ok()) continue;
      job->status = spool_.publish(job->envelope.id);
      any_committed = any_committed || job->status.ok();
    }
    // One directory fsync makes every rename of the batch durable.
    if (any_committed) {
      const Status synced = spool_.sync_queue_dir();
      if (!synced.ok())
        for (auto& job : batch)
          if (job->status.ok()) job->status = synced.error();
    }
    bool any_task = false;
    for (auto& job : batch) {
      if (!job->task) continue;
      job->status = job->task();
      any_task = any_task || job->status.ok();
    }
    if (any_task) {
      const Status synced = spool_.sync_queue_dir();
      if (!synced.ok())
        for (auto& job : batch)
          if (job->task && job->status.ok()) job->status = synced.error();
    }
    {
      std::lock_guard lock(mutex_);
      if (!staged.empty()) {
        ++batches_;
        if (staged.size() > largest_batch_) largest_batch_ = staged.size();
      }
      for (auto& job : batch) finished_.push_back(std::move(job));
    }
    const char byte = 1;
    (void)!write(wake_write_.get(), &byte, 1);  // a full pipe already means "wake up"
  }
}

void Committer::deliver_results() {
  char drain[256];
  while (read(wake_read_.get(), drain, sizeof drain) > 0) {
  }
  std::vector<std::unique_ptr<Job>> done;
  {
    std::lock_guard lock(mutex_);
    done.swap(finished_);
  }
  for (auto& job : done) {
    if (job->task) {
      job->task_done(job->status);
    } else {
      job->done(job->envelope, job->status);
    }
  }
}

}  // namespace postern::queue
