#include "core/thread_pool.h"

#include <atomic>
#include <exception>

#include "core/error.h"

namespace sd {

ThreadPool::ThreadPool(int threads) {
  SD_CHECK(threads >= 1, "ThreadPool needs at least one thread, got ", threads);
  for (int i = 0; i < threads; ++i) {
    workers_.emplace_back([this] {
      for (;;) {
        std::function<void()> job;
        {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
          if (jobs_.empty()) return;  // stop_ and drained
          job = std::move(jobs_.front());
          jobs_.pop();
        }
        job();
      }
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::enqueue(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    SD_CHECK(!stop_, "ThreadPool: submit after shutdown");
    jobs_.push(std::move(job));
  }
  cv_.notify_one();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& f) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  auto run = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        f(i);
      } catch (...) {
        std::lock_guard<std::mutex> lk(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::future<void>> helpers;
  int extra = int(std::min<int64_t>(n - 1, size()));
  for (int i = 0; i < extra; ++i) helpers.push_back(submit(run));
  run();
  for (auto& h : helpers) h.wait();
  if (error) std::rethrow_exception(error);
}

}  // namespace sd
