// FrameQueue (Block / DropOldest, close, cancel) and run_stream on fake stages: order, drops,
// stats, and an exception in a stage surfacing without a deadlock (every test that could hang
// runs under a timeout guard).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "pipeline/frame_queue.h"
#include "pipeline/stream_runner.h"

namespace sd {
namespace {

using namespace std::chrono_literals;

Frame frame(int64_t i) {
  Frame f;
  f.index = i;
  return f;
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

TEST(FrameQueue, PercentileIsNearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(percentile(v, 50), 50);
  EXPECT_EQ(percentile(v, 99), 99);
  EXPECT_EQ(percentile(v, 100), 100);
  EXPECT_EQ(percentile({3.0}, 99), 3);
  EXPECT_EQ(percentile({}, 50), 0);
}

// Fake stages: read produces n frames carrying their index in `name`, preprocess and denoise
// transform a tensor-free payload (name), write records the order.
struct FakeStages {
  int n = 0;
  std::vector<std::string> written;
  StreamStages stages() {
    StreamStages s;
    s.read = [this](Frame& f) {
      if (f.index >= n) return false;
      f.name = std::to_string(f.index);
      return true;
    };
    s.preprocess = [](Frame& f) { f.name = "p" + f.name; };
    s.denoise = [](Frame& f) {
      f.name = "d" + f.name;
      f.skipped = f.index % 3 == 0;
    };
    s.write = [this](Frame& f) { written.push_back(f.name); };
    return s;
  }
};

TEST(FrameQueueRunner, BlockRunsEveryFrameInOrderWithStats) {
  with_timeout([] {
    FakeStages fake;
    fake.n = 25;
    int progress_calls = 0;
    StreamRunOptions opt;
    opt.on_frame = [&](const Frame&, const StreamRunStats& s) {
      ++progress_calls;
      EXPECT_EQ(s.frames_written, progress_calls);
    };
    const StreamRunStats st = run_stream(fake.stages(), opt);
    ASSERT_EQ(fake.written.size(), 25u);
    for (int i = 0; i < 25; ++i) EXPECT_EQ(fake.written[size_t(i)], "dp" + std::to_string(i));
    EXPECT_EQ(st.frames_read, 25);
    EXPECT_EQ(st.frames_written, 25);
    EXPECT_EQ(st.frames_dropped, 0);
    EXPECT_EQ(st.frames_skipped, 9);  // 0, 3, ..., 24
    EXPECT_EQ(progress_calls, 25);
    EXPECT_GE(st.latency_p99_ms, st.latency_p50_ms);
    EXPECT_GE(st.latency_max_ms, st.latency_p99_ms);
    EXPECT_GT(st.latency_mean_ms, 0);
  });
}

TEST(FrameQueueRunner, DropOldestDropsFramesBehindASlowDenoiser) {
  with_timeout([] {
    FakeStages fake;
    fake.n = 60;
    StreamStages s = fake.stages();
    s.denoise = [](Frame& f) {
      std::this_thread::sleep_for(5ms);  // the reader is far faster
      f.name = "d" + f.name;
    };
    StreamRunOptions opt;
    opt.input_policy = QueuePolicy::DropOldest;
    const StreamRunStats st = run_stream(s, opt);
    EXPECT_EQ(st.frames_read, 60);
    EXPECT_GT(st.frames_dropped, 0);
    EXPECT_EQ(st.frames_written + st.frames_dropped, 60);
    ASSERT_FALSE(fake.written.empty());
    EXPECT_EQ(fake.written.back(), "dp59") << "the newest frame must come through";
    for (size_t i = 1; i < fake.written.size(); ++i)  // still in order
      EXPECT_LT(std::stoi(fake.written[i - 1].substr(2)), std::stoi(fake.written[i].substr(2)));
  });
}

TEST(FrameQueueRunner, AnExceptionInAnyStageSurfacesWithoutDeadlock) {
  for (const char* failing : {"read", "preprocess", "denoise", "write"}) {
    with_timeout([failing] {
      FakeStages fake;
      fake.n = 1000000;  // would run for long if the failure did not stop it
      StreamStages s = fake.stages();
      const std::string which = failing;
      auto thrower = [which](const std::string& stage, Frame& f) {
        if (stage == which && f.index == 5) fail("stage ", stage, " failed on frame ", f.index);
      };
      auto read = s.read;
      s.read = [=](Frame& f) {
        thrower("read", f);
        return read(f);
      };
      auto pre = s.preprocess;
      s.preprocess = [=](Frame& f) {
        thrower("preprocess", f);
        pre(f);
      };
      auto den = s.denoise;
      s.denoise = [=](Frame& f) {
        thrower("denoise", f);
        den(f);
      };
      auto wr = s.write;
      s.write = [=](Frame& f) {
        thrower("write", f);
        wr(f);
      };
      try {
        run_stream(s);
        ADD_FAILURE() << "no exception for a failing " << which;
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("stage " + which + " failed on frame 5"),
                  std::string::npos)
            << e.what();
      }
      EXPECT_LT(fake.written.size(), 100u);
    });
  }
}

TEST(FrameQueueRunner, EmptyInputAndMissingStages) {
  FakeStages fake;
  const StreamRunStats st = run_stream(fake.stages());
  EXPECT_EQ(st.frames_written, 0);
  EXPECT_EQ(st.latency_p50_ms, 0);
  StreamStages none;
  EXPECT_THROW(run_stream(none), Error);
}

}  // namespace
}  // namespace sd
