// Group commit; see committer.hpp.
#include "queue/committer.hpp"

namespace postern::queue {

// How long a task waits for others to share its directory fsync.
constexpr std::chrono::milliseconds kTaskDelay{10};

Committer::Committer(event_base* base, Spool& spool)
    : spool_(spool),
      worker_(
          base, [this](std::vector<std::unique_ptr<Job>>& batch) { work(batch); }, &finish,
          kTaskDelay) {}

void Committer::submit(Envelope envelope, NewMessage files, Done done) {
  auto job = std::make_unique<Job>();
  job->envelope = std::move(envelope);
  job->files = std::move(files);
  job->done = std::move(done);
  worker_.post(std::move(job));
}

void Committer::run(std::function<Status()> task, std::function<void(const Status&)> done) {
  auto job = std::make_unique<Job>();
  job->task = std::move(task);
  job->task_done = std::move(done);
  worker_.post_later(std::move(job));
}

void Committer::work(std::vector<std::unique_ptr<Job>>& batch) {
  // The data of every message durable at once, then every envelope written and made durable
  // at once: the spool's commit in steps that the batch shares (spool.hpp).
  std::vector<Job*> commits;
  for (auto& job : batch) {
    if (job->task) continue;
    job->status = spool_.prepare(job->envelope, job->files.ours.get(), job->files.envelope.get());
    if (job->status.ok()) commits.push_back(job.get());
  }
  // Runs one step over the jobs still going; a failure fails each job it concerns.
  auto sync_step = [&](auto fd_of) {
    std::vector<int> fds;
    for (Job* job : commits)
      if (job->status.ok()) fds.push_back(fd_of(*job));
    if (fds.empty()) return;
    const Status synced = spool_.sync_files(fds);
    if (!synced.ok())
      for (Job* job : commits)
        if (job->status.ok()) job->status = synced.error();
  };
  sync_step([](const Job& job) { return job.files.ours.get(); });
  for (Job* job : commits)
    if (job->status.ok())
      job->status = spool_.write_envelope(job->envelope, job->files.envelope.get());
  sync_step([](const Job& job) { return job.files.envelope.get(); });
  // Names made without a directory fsync since (no spare was ready) need one now.
  bool names_pending = false;
  for (Job* job : commits) names_pending = names_pending || !job->files.names_durable;
  if (names_pending) {
    const Status synced = spool_.sync_queue_dir();
    if (!synced.ok())
      for (Job* job : commits)
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
  if (!commits.empty()) {
    ++batches_;
    if (commits.size() > largest_batch_) largest_batch_ = commits.size();
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
