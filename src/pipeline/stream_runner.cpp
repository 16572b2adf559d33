#include "pipeline/stream_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"

namespace sd {

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * double(values.size()));
  const size_t i = size_t(std::clamp(rank, 1.0, double(values.size()))) - 1;
  return values[i];
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The first exception any stage throws, and the queues to cancel when it happens.
class FailureLatch {
 public:
  explicit FailureLatch(std::vector<FrameQueue*> queues) : queues_(std::move(queues)) {}
  void fail(std::exception_ptr e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::move(e);
    }
    for (FrameQueue* q : queues_) q->cancel();
  }
  std::exception_ptr error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::vector<FrameQueue*> queues_;
  mutable std::mutex mu_;
  std::exception_ptr error_;
};

// Pops from `in`, applies `fn`, pushes to `out`; closes `out` when `in` is drained.
void transform_loop(FrameQueue& in, FrameQueue& out, const std::function<void(Frame&)>& fn,
                    FailureLatch& latch) {
  try {
    while (std::optional<Frame> f = in.pop()) {
      if (fn) fn(*f);
      if (!out.push(std::move(*f))) break;
    }
    out.close();
  } catch (...) {
    latch.fail(std::current_exception());
  }
}

}  // namespace

StreamRunStats run_stream(const StreamStages& stages, const StreamRunOptions& options) {
  SD_CHECK(stages.read && stages.denoise, "run_stream: the read and denoise stages are required");
  FrameQueue in(options.queue_capacity, options.input_policy);
  FrameQueue pre(options.queue_capacity, options.input_policy);
  FrameQueue out(options.queue_capacity, QueuePolicy::Block);
  FailureLatch latch({&in, &pre, &out});

  StreamRunStats stats;
  std::vector<double> latencies_ms;
  const Clock::time_point start = Clock::now();
  Clock::time_point last_write = start;

  std::thread reader([&] {
    try {
      for (int64_t index = 0;; ++index) {
        Frame f;
        f.index = index;
        if (!stages.read(f)) break;
        f.started = Clock::now();
        if (!in.push(std::move(f))) break;
      }
      in.close();
    } catch (...) {
      latch.fail(std::current_exception());
    }
  });
  std::thread preprocessor([&] { transform_loop(in, pre, stages.preprocess, latch); });
  std::thread denoiser([&] { transform_loop(pre, out, stages.denoise, latch); });
  std::thread writer([&] {
    try {
      while (std::optional<Frame> f = out.pop()) {
        if (stages.write) stages.write(*f);
        last_write = Clock::now();
        latencies_ms.push_back(seconds_between(f->started, last_write) * 1e3);
        ++stats.frames_written;
        if (f->skipped) ++stats.frames_skipped;
        if (options.on_frame) {
          stats.wall_s = seconds_between(start, last_write);
          stats.fps = stats.wall_s > 0 ? double(stats.frames_written) / stats.wall_s : 0;
          options.on_frame(*f, stats);
        }
      }
    } catch (...) {
      latch.fail(std::current_exception());
    }
  });
  reader.join();
  preprocessor.join();
  denoiser.join();
  writer.join();
  if (std::exception_ptr e = latch.error()) std::rethrow_exception(e);

  stats.frames_read = in.pushed();
  stats.frames_dropped = in.dropped() + pre.dropped();
  stats.wall_s = seconds_between(start, last_write);
  stats.fps = stats.wall_s > 0 ? double(stats.frames_written) / stats.wall_s : 0;
  if (!latencies_ms.empty()) {
    stats.latency_mean_ms = std::accumulate(latencies_ms.begin(), latencies_ms.end(), 0.0) /
                            double(latencies_ms.size());
    stats.latency_p50_ms = percentile(latencies_ms, 50);
    stats.latency_p99_ms = percentile(latencies_ms, 99);
    stats.latency_max_ms = *std::max_element(latencies_ms.begin(), latencies_ms.end());
  }
  return stats;
}

}  // namespace sd
