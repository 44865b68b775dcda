// Tests for common/util/worker.hpp: batches, the order of results, and the gather delay (a batch
// waits that long after its first job, and then takes every job posted meanwhile).
#include "common/util/worker.hpp"

#include <event2/event.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/util/event.hpp"

namespace postern {
namespace {

using namespace std::chrono_literals;

struct Job {
  int id = 0;
};

// Jobs posted while a batch runs form the next batch; results come back in posting order.
TEST(BatchWorker, JobsPostedDuringABatchFormTheNextInOrder) {
  EventBasePtr base = make_event_base();
  std::vector<size_t> sizes;  // written on the worker thread, read after it finished
  std::vector<int> finished;
  BatchWorker<Job>* self = nullptr;
  BatchWorker<Job> worker(
      base.get(),
      [&](BatchWorker<Job>::Batch& batch) {
        sizes.push_back(batch.size());
        if (batch.front()->id != 0) return;
        // Posted while this batch runs (from its own thread, so surely during it).
        for (int i = 1; i < 6; ++i) self->post(std::make_unique<Job>(Job{i}));
        std::this_thread::sleep_for(20ms);
      },
      [&](Job& job) {
        finished.push_back(job.id);
        if (finished.size() == 6) event_base_loopexit(base.get(), nullptr);
      });
  self = &worker;
  worker.post(std::make_unique<Job>(Job{0}));
  Timer timeout(base.get(), [&] { event_base_loopbreak(base.get()); });
  timeout.arm(5s);
  event_base_dispatch(base.get());
  EXPECT_EQ(finished, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 5}));
}

TEST(BatchWorker, ABatchGathersForItsDelay) {
  EventBasePtr base = make_event_base();
  std::vector<size_t> sizes;
  std::chrono::steady_clock::time_point done;
  BatchWorker<Job> worker(
      base.get(), [&](BatchWorker<Job>::Batch& batch) { sizes.push_back(batch.size()); },
      [&](Job& job) {
        if (job.id != 2) return;
        done = std::chrono::steady_clock::now();
        event_base_loopexit(base.get(), nullptr);
      },
      500ms);
  const auto posted = std::chrono::steady_clock::now();
  worker.post(std::make_unique<Job>(Job{1}));
  std::this_thread::sleep_for(20ms);
  worker.post(std::make_unique<Job>(Job{2}));  // joins the first, whose delay still runs
  Timer timeout(base.get(), [&] { event_base_loopbreak(base.get()); });
  timeout.arm(5s);
  event_base_dispatch(base.get());
  EXPECT_GE(done - posted, 500ms);
  EXPECT_EQ(sizes, (std::vector<size_t>{2}));
}

// hurry(): the jobs posted so far go without waiting out the delay, together.
TEST(BatchWorker, HurriedJobsDoNotWaitForTheDelay) {
  EventBasePtr base = make_event_base();
  std::vector<size_t> sizes;
  int finished = 0;
  BatchWorker<Job> worker(
      base.get(), [&](BatchWorker<Job>::Batch& batch) { sizes.push_back(batch.size()); },
      [&](Job&) {
        if (++finished == 2) event_base_loopexit(base.get(), nullptr);
      },
      60s);
  const auto posted = std::chrono::steady_clock::now();
  worker.post(std::make_unique<Job>(Job{1}));
  worker.post(std::make_unique<Job>(Job{2}));
  worker.hurry();
  Timer timeout(base.get(), [&] { event_base_loopbreak(base.get()); });
  timeout.arm(30s);
  event_base_dispatch(base.get());
  EXPECT_EQ(finished, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - posted, 30s);  // not after their 60 s delay
  EXPECT_EQ(sizes, (std::vector<size_t>{2}));
}

TEST(BatchWorker, DestroyingRunsWaitingJobsAtOnce) {
  EventBasePtr base = make_event_base();
  std::atomic<int> ran = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    BatchWorker<Job> worker(
        base.get(), [&](BatchWorker<Job>::Batch& batch) { ran += static_cast<int>(batch.size()); },
        [](Job&) {}, 10s);
    worker.post(std::make_unique<Job>(Job{1}));
    worker.post(std::make_unique<Job>(Job{2}));
  }
  EXPECT_EQ(ran, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);  // not after their 10 s delay
}

}  // namespace
}  // namespace postern
