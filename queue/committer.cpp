// Group commit; see committer.hpp.
#include "queue/committer.hpp"

#include <algorithm>
#include <map>
#include <string_view>
#include <system_error>
#include <thread>

namespace postern::queue {

// How long a task waits for others to share its directory fsync.
constexpr std::chrono::milliseconds kTaskDelay{10};

Committer::Committer(event_base* base, Spool& spool)
    : spool_(spool),
      tasks_(
          base, [this](std::vector<std::unique_ptr<Job>>& batch) { run_tasks(batch); }, &finish,
          kTaskDelay),
      commits_(
          base, [this](std::vector<std::unique_ptr<Job>>& batch) { commit(batch); }, &finish) {}

void Committer::submit(Envelope envelope, NewMessage files, Done done) {
  auto job = std::make_unique<Job>();
  job->envelope = std::move(envelope);
  job->files = std::move(files);
  job->done = std::move(done);
  commits_.post(std::move(job));
}

void Committer::run(std::string key, std::function<Status()> task,
                    std::function<void(const Status&)> done) {
  auto job = std::make_unique<Job>();
  job->key = std::move(key);
  job->task = std::move(task);
  job->task_done = std::move(done);
  tasks_.post(std::move(job));
}

void Committer::run_tasks(std::vector<std::unique_ptr<Job>>& batch) {
  // Each key's tasks in order on one lane; the lanes side by side.
  std::map<std::string_view, size_t> lane_of;
  std::vector<std::vector<Job*>> lanes;
  for (auto& job : batch) {
    auto [it, fresh] = lane_of.emplace(job->key, lane_of.size() % kTaskThreads);
    if (it->second >= lanes.size()) lanes.resize(it->second + 1);
    lanes[it->second].push_back(job.get());
  }
  auto run_lane = [](const std::vector<Job*>& lane) {
    for (Job* job : lane) job->status = job->task();
  };
  std::vector<std::thread> helpers;
  for (size_t i = 1; i < lanes.size(); ++i) {
    try {
      helpers.emplace_back(run_lane, std::cref(lanes[i]));
    } catch (const std::system_error&) {
      run_lane(lanes[i]);  // no thread to be had (RLIMIT_NPROC): here, after the others
    }
  }
  if (!lanes.empty()) run_lane(lanes[0]);
  for (std::thread& helper : helpers) helper.join();
  const bool any_task =
      std::any_of(batch.begin(), batch.end(), [](const auto& job) { return job->status.ok(); });
  if (!any_task) return;
  const Status synced = spool_.sync_queue_dir();
  if (!synced.ok())
    for (auto& job : batch)
      if (job->status.ok()) job->status = synced.error();
}

void Committer::commit(std::vector<std::unique_ptr<Job>>& batch) {
  std::vector<Spool::Commit> commits;
  commits.reserve(batch.size());
  for (auto& job : batch)
    commits.push_back(Spool::Commit{&job->envelope, &job->files, ok_status()});
  spool_.commit(commits);
  size_t committed = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i]->status = commits[i].status;
    committed += commits[i].status.ok() ? 1 : 0;
  }
  // Failed jobs are not counted in a batch.
  if (committed == 0) return;
  ++batches_;
  if (committed > largest_batch_) largest_batch_ = committed;
}

void Committer::finish(Job& job) {
  if (job.task) {
    job.task_done(job.status);
  } else {
    job.done(job.envelope, job.status);
  }
}

}  // namespace postern::queue
