// Group commit; see committer.hpp.
#include "queue/committer.hpp"

namespace postern::queue {

Committer::Committer(event_base* base, Spool& spool)
    : spool_(spool),
      worker_(
          base, [this](std::vector<std::unique_ptr<Job>>& batch) { work(batch); }, &finish) {}

void Committer::submit(Envelope envelope, UniqueFd data_fd, UniqueFd envelope_fd, Done done) {
  auto job = std::make_unique<Job>();
  job->envelope = std::move(envelope);
  job->data_fd = std::move(data_fd);
  job->envelope_fd = std::move(envelope_fd);
  job->done = std::move(done);
  worker_.post(std::move(job));
}

void Committer::run(std::function<Status()> task, std::function<void(const Status&)> done) {
  auto job = std::make_unique<Job>();
  job->task = std::move(task);
  job->task_done = std::move(done);
  worker_.post(std::move(job));
}

void Committer::work(std::vector<std::unique_ptr<Job>>& batch) {
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
  if (!staged.empty()) {
    ++batches_;
    if (staged.size() > largest_batch_) largest_batch_ = staged.size();
  }
}

void Committer::finish(Job& job) {
  if (job.task) {
    job.task_done(job.status);
  } else {
    job.done(job.envelope, job.status);
  }
}

}  // namespace postern::queue
