// The asynchronous mode of the public Stream: a producer thread submitting and this thread
// polling give the synchronous frames in order; DropOldest drops and counts; the callback mode;
// an output that does not fit the caller's buffer is not lost; an error on the worker surfaces
// in stop(); nothing hangs (every test runs under a time limit).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

#include "api_test_support.h"

namespace streamdiff {
namespace {

using namespace std::chrono_literals;
using test::frame;
using test::tiny_config;
using test::tiny_model;

template <typename F>
void with_timeout(F fn, std::chrono::seconds limit = 60s) {
  auto task = std::async(std::launch::async, std::move(fn));
  ASSERT_EQ(task.wait_for(limit), std::future_status::ready) << "timed out: deadlock?";
  task.get();
}

std::vector<std::vector<uint8_t>> sync_outputs(int frames) {
  Stream s(tiny_model(), tiny_config());
  std::vector<std::vector<uint8_t>> out;
  for (int k = 0; k < frames; ++k) {
    Image o = frame(k);
    s.img2img(frame(k).view(), o.mutable_view());
    out.push_back(o.rgb);
  }
  return out;
}

TEST(ApiAsync, BlockGivesTheSynchronousFramesInOrder) {
  with_timeout([] {
    constexpr int kFrames = 6;
    const auto ref = sync_outputs(kFrames);
    Stream s(tiny_model(), tiny_config());
    s.start();
    EXPECT_TRUE(s.running());
    std::thread producer([&] {
      for (int k = 0; k < kFrames; ++k) EXPECT_TRUE(s.submit(frame(k).view(), 100 + k));
      s.end_input();
    });
    Image out = frame(0);
    FrameInfo info;
    int got = 0;
    double latency = 0, compute = 0;
    while (s.poll(out.mutable_view(), &info)) {
      EXPECT_EQ(info.index, got);
      EXPECT_EQ(info.tag, 100 + got);
      // compute_ms: the frame's own time; latency_ms also counts its wait in the queue.
      EXPECT_GT(info.compute_ms, 0);
      EXPECT_LE(info.compute_ms, info.latency_ms);
      latency += info.latency_ms;
      compute += info.compute_ms;
      EXPECT_EQ(info.shown_tag, 100 + std::max(0, got - 1));  // lag n - 1 = 1
      EXPECT_EQ(out.rgb, ref[size_t(got)]) << "frame " << got;
      ++got;
    }
    producer.join();
    EXPECT_EQ(got, kFrames);
    EXPECT_GT(latency, compute) << "six frames submitted at once: later ones wait in the queue";
    EXPECT_FALSE(s.running());
    s.stop();
    const StreamStats st = s.stats();
    EXPECT_EQ(st.frames_in, kFrames);
    EXPECT_EQ(st.frames_out, kFrames);
    EXPECT_EQ(st.dropped, 0);
    EXPECT_FALSE(s.submit(frame(0).view()));  // stopped
  });
}

TEST(ApiAsync, DropOldestNeverBlocksTheProducerAndCountsDrops) {
  with_timeout([] {
    Stream s(tiny_model(), tiny_config());
    AsyncOptions o;
    o.policy = QueuePolicy::DropOldest;
    o.queue_capacity = 1;
    s.start(o);
    const Image f = frame(0);
    constexpr int kSubmits = 30;
    for (int k = 0; k < kSubmits; ++k) ASSERT_TRUE(s.submit(f.view(), k));  // a fast camera
    s.end_input();
    Image out = f;
    int got = 0;
    while (s.poll(out.mutable_view())) ++got;
    s.stop();
    const StreamStats st = s.stats();
    EXPECT_GT(st.dropped, 0);
    EXPECT_EQ(got + st.dropped, kSubmits);
  });
}

TEST(ApiAsync, CallbackModeDeliversEveryOutputOnTheWorker) {
  with_timeout([] {
    Stream s(tiny_model(), tiny_config());
    AsyncOptions o;
    o.output_format = PixelFormat::BGRA8;
    std::atomic<int> calls{0};
    std::thread::id worker;
    o.on_output = [&](const ImageView& img, const FrameInfo& info) {
      EXPECT_EQ(img.width, 64);
      EXPECT_EQ(img.format, PixelFormat::BGRA8);
      EXPECT_EQ(info.tag, calls.load());
      worker = std::this_thread::get_id();
      ++calls;
    };
    s.start(o);
    for (int k = 0; k < 4; ++k) ASSERT_TRUE(s.submit(frame(k).view(), k));
    s.end_input();
    Image unused = frame(0);
    EXPECT_FALSE(s.poll(unused.mutable_view()));  // waits for the worker to finish
    s.stop();
    EXPECT_EQ(calls.load(), 4);
    EXPECT_NE(worker, std::this_thread::get_id());
  });
}

TEST(ApiAsync, AnOutputThatDoesNotFitIsKeptForTheNextPoll) {
  with_timeout([] {
    Stream s(tiny_model(), tiny_config());
    s.start();
    ASSERT_TRUE(s.submit(frame(0).view(), 7));
    s.end_input();
    std::vector<uint8_t> small(32 * 32 * 3);
    EXPECT_THROW(s.poll({small.data(), 32, 32, 0, PixelFormat::RGB8}), Error);
    Image out = frame(0);
    FrameInfo info;
    ASSERT_TRUE(s.poll(out.mutable_view(), &info));
    EXPECT_EQ(info.tag, 7);
    EXPECT_FALSE(s.poll(out.mutable_view(), &info, 0));
    s.stop();
  });
}

TEST(ApiAsync, AWorkerErrorSurfacesInStopAndReleasesTheProducer) {
  with_timeout([] {
    Stream s(tiny_model(), tiny_config());
    AsyncOptions o;
    o.on_output = [](const ImageView&, const FrameInfo&) {
      throw std::runtime_error("the host's callback failed");
    };
    s.start(o);
    bool refused = false;
    for (int k = 0; k < 20 && !refused; ++k) refused = !s.submit(frame(k).view(), k);
    EXPECT_TRUE(refused) << "submit kept accepting frames after the worker failed";
    try {
      s.stop();
      ADD_FAILURE() << "stop() did not rethrow the worker's error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("the host's callback failed"), std::string::npos);
    }
    // The stream is usable again, synchronously and asynchronously.
    Image out = frame(0);
    s.img2img(frame(0).view(), out.mutable_view());
    s.start();
    ASSERT_TRUE(s.submit(frame(1).view(), 1));
    EXPECT_TRUE(s.poll(out.mutable_view()));
    s.stop();
  });
}

TEST(ApiAsync, MisuseIsRefused) {
  Stream s(tiny_model(), tiny_config());
  Image out = frame(0);
  EXPECT_THROW(s.poll(out.mutable_view()), Error);  // not started
  AsyncOptions bad;
  bad.queue_capacity = 0;
  EXPECT_THROW(s.start(bad), Error);
  s.start();
  EXPECT_THROW(s.start(), Error);                                       // already running
  EXPECT_THROW(s.img2img(frame(0).view(), out.mutable_view()), Error);  // async mode
  EXPECT_THROW(s.reset(), Error);
  ImageView null_in{nullptr, 64, 64, 0, PixelFormat::RGB8};
  EXPECT_THROW(s.submit(null_in), Error);
  s.stop();
  s.stop();  // idempotent
  StreamConfig c = tiny_config();
  c.frame_buffer_size = 2;
  Stream two(tiny_model(), c);
  EXPECT_THROW(two.start(), Error);
}

TEST(ApiAsync, DestroyingARunningStreamDoesNotHang) {
  with_timeout([] {
    Stream s(tiny_model(), tiny_config());
    s.start();
    for (int k = 0; k < 3; ++k) s.submit(frame(k).view(), k);
  });  // ~Stream stops the worker with frames still queued
}

}  // namespace
}  // namespace streamdiff
