// BoundedQueue<T>: a bounded, thread-safe FIFO between two threads of a stream (a host thread
// submitting frames and the worker running the model, or the worker and a host thread polling
// outputs).
//
// Two policies for a full queue:
//   Block       the producer waits for room: nothing is dropped or reordered (file input).
//   DropOldest  the oldest queued item is discarded (or handed back to the producer, so that its
//               buffers can be reused) and counted: a live source never waits and the consumer
//               always gets the freshest frames.
// close() ends the stream: producers are released (push returns false), consumers drain what is
// queued and then get std::nullopt. cancel() is close() that also discards what is queued.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

#include "core/error.h"

namespace sd {

enum class QueuePolicy { Block, DropOldest };

template <typename T>
class BoundedQueue {
 public:
  BoundedQueue(size_t capacity, QueuePolicy policy) : capacity_(capacity), policy_(policy) {
    SD_CHECK(capacity >= 1, "queue capacity must be at least 1, got ", capacity);
  }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Queues an item; false (the item is discarded) once the queue is closed. Block waits for room;
  // DropOldest never waits: the item it displaces goes to *displaced when given.
  bool push(T item, std::optional<T>* displaced = nullptr) {
    std::unique_lock<std::mutex> lock(mu_);
    if (policy_ == QueuePolicy::Block)
      not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    if (closed_) return false;
    if (items_.size() >= capacity_) {  // DropOldest
      if (displaced) displaced->emplace(std::move(items_.front()));
      items_.pop_front();
      ++dropped_;
    }
    items_.push_back(std::move(item));
    ++pushed_;
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }

  // The next item in order; waits while the queue is empty and open; std::nullopt once it is
  // closed and drained (or cancelled).
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    return take_locked();
  }
  // The same, giving up after `timeout` (std::nullopt while closed() is still false).
  std::optional<T> pop_for(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait_for(lock, timeout, [&] { return closed_ || !items_.empty(); });
    return take_locked();
  }

  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }
  void cancel() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      items_.clear();
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }
  QueuePolicy policy() const { return policy_; }
  int64_t dropped() const {  // items discarded by DropOldest (not by cancel)
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }
  int64_t pushed() const {  // items accepted by push
    std::lock_guard<std::mutex> lock(mu_);
    return pushed_;
  }

 private:
  std::optional<T> take_locked() {
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    not_full_.notify_one();
    return item;
  }

  const size_t capacity_;
  const QueuePolicy policy_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<T> items_;
  bool closed_ = false;
  int64_t dropped_ = 0, pushed_ = 0;
};

}  // namespace sd
