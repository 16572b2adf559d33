// ThreadPool: a fixed set of worker threads for pipeline stages and host-side work (image
// decoding, resizing, encoding). Compute kernels do not use it: they run on OpenMP, the runtime
// oneDNN uses, so the two never oversubscribe the cores.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace sd {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();  // finishes queued work, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()); }

  // Runs f on a worker; the future carries its result or its exception.
  template <typename F>
  auto submit(F f) -> std::future<decltype(f())> {
    using R = decltype(f());
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(f));
    std::future<R> fut = task->get_future();
    enqueue([task] { (*task)(); });
    return fut;
  }

  // Calls f(i) for i in [0, n) across the workers and the calling thread; rethrows the first
  // exception after all chunks have finished.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& f);

 private:
  void enqueue(std::function<void()> job);
  std::vector<std::thread> workers_;
  std::queue<std::function<void()>> jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace sd
