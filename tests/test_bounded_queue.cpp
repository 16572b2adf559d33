// BoundedQueue (Block / DropOldest, close, cancel, displaced items) and LatencyWindow (bounded
// statistics). Every test that could hang runs under a timeout guard.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "pipeline/bounded_queue.h"
#include "pipeline/latency_window.h"

namespace sd {
namespace {

using namespace std::chrono_literals;

// Queue items: a frame index (the queue is a template; the stream's slots are larger).
struct Item {
  int64_t index = 0;
};
using FrameQueue = BoundedQueue<Item>;

Item frame(int64_t i) {
  return Item{i};
}

// Runs fn on another thread; fails the test (and does not wait forever) if it hangs.
template <typename F>
void with_timeout(F fn, std::chrono::seconds limit = 20s) {
  auto task = std::async(std::launch::async, std::move(fn));
  ASSERT_EQ(task.wait_for(limit), std::future_status::ready) << "timed out: deadlock?";
  task.get();  // rethrows assertion-free exceptions from fn
}

TEST(FrameQueue, BlockKeepsOrderAndDropsNothing) {
  with_timeout([] {
    FrameQueue q(2, QueuePolicy::Block);
    constexpr int kFrames = 200;
    std::thread producer([&] {
      for (int i = 0; i < kFrames; ++i) EXPECT_TRUE(q.push(frame(i)));
      q.close();
    });
    std::vector<int64_t> got;
    while (auto f = q.pop()) {
      EXPECT_LE(q.size(), 2u);
      got.push_back(f->index);
    }
    producer.join();
    ASSERT_EQ(got.size(), size_t(kFrames));
    for (int i = 0; i < kFrames; ++i) EXPECT_EQ(got[size_t(i)], i);
    EXPECT_EQ(q.dropped(), 0);
    EXPECT_EQ(q.pushed(), kFrames);
  });
}

TEST(FrameQueue, BlockProducerWaitsForRoom) {
  with_timeout([] {
    FrameQueue q(1, QueuePolicy::Block);
    ASSERT_TRUE(q.push(frame(0)));
    std::atomic<bool> second_done{false};
    std::thread producer([&] {
      EXPECT_TRUE(q.push(frame(1)));
      second_done = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(second_done.load()) << "push on a full Block queue returned without room";
    EXPECT_EQ(q.pop()->index, 0);
    producer.join();
    EXPECT_TRUE(second_done.load());
    EXPECT_EQ(q.pop()->index, 1);
  });
}

TEST(FrameQueue, DropOldestKeepsTheNewestAndCountsDrops) {
  FrameQueue q(3, QueuePolicy::DropOldest);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(q.push(frame(i)));  // never blocks
  EXPECT_EQ(q.dropped(), 7);
  EXPECT_EQ(q.size(), 3u);
  q.close();
  std::vector<int64_t> got;
  while (auto f = q.pop()) got.push_back(f->index);
  EXPECT_EQ(got, (std::vector<int64_t>{7, 8, 9}));
}

TEST(FrameQueue, CloseDrainsThenEndsAndRejectsPushes) {
  FrameQueue q(4, QueuePolicy::Block);
  q.push(frame(0));
  q.push(frame(1));
  q.close();
  EXPECT_FALSE(q.push(frame(2)));
  EXPECT_EQ(q.pop()->index, 0);
  EXPECT_EQ(q.pop()->index, 1);
  EXPECT_FALSE(q.pop().has_value());
  EXPECT_FALSE(q.pop().has_value());
}

TEST(FrameQueue, CloseWakesBlockedConsumersAndProducers) {
  with_timeout([] {
    FrameQueue empty(1, QueuePolicy::Block), full(1, QueuePolicy::Block);
    full.push(frame(0));
    std::atomic<int> woke{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 3; ++i)
      waiters.emplace_back([&] {
        EXPECT_FALSE(empty.pop().has_value());
        ++woke;
      });
    std::thread producer([&] {
      EXPECT_FALSE(full.push(frame(1)));  // released by close, frame discarded
      ++woke;
    });
    std::this_thread::sleep_for(30ms);
    EXPECT_EQ(woke.load(), 0);
    empty.close();
    full.close();
    for (auto& t : waiters) t.join();
    producer.join();
    EXPECT_EQ(woke.load(), 4);
    EXPECT_EQ(full.pop()->index, 0);  // what was queued before close is still delivered
  });
}

TEST(FrameQueue, CancelDiscardsQueuedFrames) {
  FrameQueue q(4, QueuePolicy::Block);
  q.push(frame(0));
  q.cancel();
  EXPECT_FALSE(q.pop().has_value());
  EXPECT_EQ(q.dropped(), 0);
}

TEST(FrameQueue, PopForTimesOutOnAnOpenEmptyQueue) {
  FrameQueue q(1, QueuePolicy::Block);
  EXPECT_FALSE(q.pop_for(10ms).has_value());
  EXPECT_FALSE(q.closed());
  EXPECT_THROW(FrameQueue(0, QueuePolicy::Block), Error);
}

TEST(FrameQueue, DropOldestHandsTheDisplacedItemBack) {
  FrameQueue q(2, QueuePolicy::DropOldest);
  std::optional<Item> displaced;
  EXPECT_TRUE(q.push(frame(0), &displaced));
  EXPECT_TRUE(q.push(frame(1), &displaced));
  EXPECT_FALSE(displaced.has_value());
  EXPECT_TRUE(q.push(frame(2), &displaced));
  ASSERT_TRUE(displaced.has_value());
  EXPECT_EQ(displaced->index, 0);
  EXPECT_EQ(q.dropped(), 1);
}

TEST(LatencyWindow, BoundedWindowForPercentilesRunningMeanAndMax) {
  LatencyWindow w(4);
  EXPECT_EQ(w.percentile(50), 0);
  for (double v : {100.0, 1.0, 2.0, 3.0, 4.0}) w.add(v);
  EXPECT_EQ(w.count(), 5);
  EXPECT_DOUBLE_EQ(w.mean(), 22.0);   // every sample
  EXPECT_EQ(w.max(), 100.0);          // every sample
  EXPECT_EQ(w.percentile(100), 4.0);  // the window: the last 4 samples only
  EXPECT_EQ(w.percentile(50), 2.0);
  for (int i = 0; i < 100000; ++i) w.add(7.0);  // memory stays at 4 samples
  EXPECT_EQ(w.percentile(1), 7.0);
  w.clear();
  EXPECT_EQ(w.count(), 0);
}

TEST(FrameQueue, PercentileIsNearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(percentile(v, 50), 50);
  EXPECT_EQ(percentile(v, 99), 99);
  EXPECT_EQ(percentile(v, 100), 100);
  EXPECT_EQ(percentile({3.0}, 99), 3);
  EXPECT_EQ(percentile({}, 50), 0);
}

}  // namespace
}  // namespace sd
