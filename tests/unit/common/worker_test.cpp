// Tests for common/worker.hpp: batches, the order of results, and jobs posted with post_later
// (they wait, but a steady stream of other jobs cannot starve them).
#include "common/worker.hpp"

#include <event2/event.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/event.hpp"

namespace postern {
namespace {

using namespace std::chrono_literals;

struct Job {
  int id = 0;
  bool later = false;
};

// Jobs 0..kChain-1 form a chain: the work on each posts the next from the worker thread, so
// that when a batch ends another job is always waiting. A later job posted at the start must
// still run before the chain is through: it waits for others at most twice its delay.
TEST(BatchWorker, LaterJobsAreNotStarvedByASteadyStream) {
  constexpr int kChain = 300;  // about 300 ms of work, 1 ms a job
  EventBasePtr base = make_event_base();
  std::vector<int> order;  // as the worker ran them; the later job is -1
  std::vector<int> finished;
  BatchWorker<Job>* self = nullptr;
  BatchWorker<Job> worker(
      base.get(),
      [&](BatchWorker<Job>::Batch& batch) {
        for (auto& job : batch) {
          order.push_back(job->later ? -1 : job->id);
          if (job->later) continue;
          std::this_thread::sleep_for(1ms);
          if (job->id + 1 < kChain) self->post(std::make_unique<Job>(Job{job->id + 1, false}));
        }
      },
      [&](Job& job) {
        finished.push_back(job.later ? -1 : job.id);
        if (!job.later && job.id + 1 == kChain) event_base_loopexit(base.get(), nullptr);
      },
      10ms);
  self = &worker;
  worker.post(std::make_unique<Job>(Job{0, false}));
  worker.post_later(std::make_unique<Job>(Job{0, true}));
  Timer timeout(base.get(), [&] { event_base_loopbreak(base.get()); });
  timeout.arm(10s);
  event_base_dispatch(base.get());
  ASSERT_EQ(finished.size(), static_cast<size_t>(kChain) + 1);
  // order is complete: every job ran before its result came back.
  size_t later_at = 0;
  while (later_at < order.size() && order[later_at] != -1) ++later_at;
  ASSERT_LT(later_at, order.size());
  // Due at 10 ms, overdue at 20 ms: it ran after a few dozen chain jobs, not after 300.
  EXPECT_GE(later_at, 5u);  // it did wait for the others
  EXPECT_LT(later_at, 100u) << "the later job waited for the stream to end";
  std::printf("[   INFO   ] the later job ran after %zu of %d chained jobs\n", later_at, kChain);
}

TEST(BatchWorker, LaterJobsGoAfterTheirDelayWhenNothingElseWaits) {
  EventBasePtr base = make_event_base();
  std::atomic<bool> ran = false;
  std::chrono::steady_clock::time_point posted, done;
  BatchWorker<Job> worker(
      base.get(), [&](BatchWorker<Job>::Batch&) { ran = true; },
      [&](Job&) {
        done = std::chrono::steady_clock::now();
        event_base_loopexit(base.get(), nullptr);
      },
      50ms);
  posted = std::chrono::steady_clock::now();
  worker.post_later(std::make_unique<Job>(Job{1, true}));
  Timer timeout(base.get(), [&] { event_base_loopbreak(base.get()); });
  timeout.arm(5s);
  event_base_dispatch(base.get());
  ASSERT_TRUE(ran);
  EXPECT_GE(done - posted, 50ms);
}

TEST(BatchWorker, DestroyingRunsLaterJobsAtOnce) {
  EventBasePtr base = make_event_base();
  std::atomic<int> ran = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    BatchWorker<Job> worker(
        base.get(), [&](BatchWorker<Job>::Batch& batch) { ran += static_cast<int>(batch.size()); },
        [](Job&) {}, 10s);
    worker.post_later(std::make_unique<Job>(Job{1, true}));
    worker.post_later(std::make_unique<Job>(Job{2, true}));
  }
  EXPECT_EQ(ran, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // not after their 10 s delay
}

}  // namespace
}  // namespace postern
