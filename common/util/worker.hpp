// Blocking work (disk flushes, password hashing) on a thread of its own, so that the event loop
// never waits for it. Jobs are taken in batches: every job posted while a batch runs joins the
// next one, which lets the work share costs (one flush for many commits). With a gather delay,
// a batch also waits that long after its first job was posted, so that work nobody waits for
// gathers into fewer, larger batches. Finished jobs come back on the event loop through a pipe,
// in the order they were posted.
//
// Start a BatchWorker after privileges are dropped and the syscall filter is installed (the
// filter must allow threads, see sandbox.cpp). Destroying it finishes the jobs already posted
// on the thread; their finish callbacks no longer run.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/util/event.hpp"
#include "common/util/fd.hpp"
#include "common/util/log.hpp"

namespace postern {

template <typename Job>
class BatchWorker {
 public:
  using Batch = std::vector<std::unique_ptr<Job>>;
  // work runs on the thread with a whole batch; finish runs on the event loop, once per job.
  BatchWorker(event_base* base, std::function<void(Batch&)> work, std::function<void(Job&)> finish,
              std::chrono::milliseconds gather = std::chrono::milliseconds(0))
      : work_(std::move(work)), finish_(std::move(finish)), gather_(gather) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) log::fatal("cannot create a worker's pipe");
    wake_read_.reset(fds[0]);
    wake_write_.reset(fds[1]);
    watcher_ = std::make_unique<FdWatcher>(base, wake_read_.get(), [this] { deliver(); });
    thread_ = std::thread([this] { run(); });
  }
  ~BatchWorker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  BatchWorker(const BatchWorker&) = delete;
  BatchWorker& operator=(const BatchWorker&) = delete;

  // The jobs posted so far go as soon as the thread is free, without waiting out the gather
  // delay: someone is waiting for them after all.
  void hurry() {
    {
      std::lock_guard lock(mutex_);
      due_ = std::chrono::steady_clock::now();
    }
    cv_.notify_one();
  }

  void post(std::unique_ptr<Job> job) {
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) due_ = std::chrono::steady_clock::now() + gather_;
      pending_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      Batch batch;
      {
        std::unique_lock lock(mutex_);
        // Stopping, the jobs waiting go at once.
        while (!stopping_ && (pending_.empty() || std::chrono::steady_clock::now() < due_)) {
          if (pending_.empty()) {
            cv_.wait(lock);
          } else {
            cv_.wait_until(lock, due_);
          }
        }
        if (pending_.empty()) return;  // stopping with nothing left to do
        while (!pending_.empty()) {
          batch.push_back(std::move(pending_.front()));
          pending_.pop_front();
        }
      }
      work_(batch);
      {
        std::lock_guard lock(mutex_);
        for (auto& job : batch) finished_.push_back(std::move(job));
      }
      const char byte = 1;
      (void)!write(wake_write_.get(), &byte, 1);  // a full pipe already means "wake up"
    }
  }

  void deliver() {
    char drain[256];
    while (read(wake_read_.get(), drain, sizeof drain) > 0) {
    }
    Batch done;
    {
      std::lock_guard lock(mutex_);
      done.swap(finished_);
    }
    for (auto& job : done) finish_(*job);
  }

  std::function<void(Batch&)> work_;
  std::function<void(Job&)> finish_;
  const std::chrono::milliseconds gather_;
  UniqueFd wake_read_;
  UniqueFd wake_write_;
  std::unique_ptr<FdWatcher> watcher_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> pending_;   // guarded by mutex_
  std::chrono::steady_clock::time_point due_;  // guarded by mutex_: when pending_ may go
  Batch finished_;                             // guarded by mutex_
  bool stopping_ = false;                      // guarded by mutex_
  std::thread thread_;                         // last: starts once everything else exists
};

}  // namespace postern
