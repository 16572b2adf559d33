#include "pipeline/frame_queue.h"

#include <utility>

#include "core/error.h"

namespace sd {

FrameQueue::FrameQueue(size_t capacity, QueuePolicy policy) : capacity_(capacity), policy_(policy) {
  SD_CHECK(capacity >= 1, "FrameQueue: capacity must be at least 1, got ", capacity);
}

bool FrameQueue::push(Frame frame) {
  std::unique_lock<std::mutex> lock(mu_);
  if (policy_ == QueuePolicy::Block)
    not_full_.wait(lock, [&] { return closed_ || frames_.size() < capacity_; });
  if (closed_) return false;
  if (frames_.size() >= capacity_) {  // DropOldest
    frames_.pop_front();
    ++dropped_;
  }
  frames_.push_back(std::move(frame));
  ++pushed_;
  lock.unlock();
  not_empty_.notify_one();
  return true;
}

std::optional<Frame> FrameQueue::take_locked() {
  if (frames_.empty()) return std::nullopt;
  std::optional<Frame> f(std::move(frames_.front()));
  frames_.pop_front();
  not_full_.notify_one();
  return f;
}

std::optional<Frame> FrameQueue::pop() {
  std::unique_lock<std::mutex> lock(mu_);
  not_empty_.wait(lock, [&] { return closed_ || !frames_.empty(); });
  return take_locked();
}

std::optional<Frame> FrameQueue::pop_for(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  not_empty_.wait_for(lock, timeout, [&] { return closed_ || !frames_.empty(); });
  return take_locked();
}

void FrameQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  not_empty_.notify_all();
  not_full_.notify_all();
}

void FrameQueue::cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    frames_.clear();
  }
  not_empty_.notify_all();
  not_full_.notify_all();
}

bool FrameQueue::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

size_t FrameQueue::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frames_.size();
}

int64_t FrameQueue::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

int64_t FrameQueue::pushed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pushed_;
}

}  // namespace sd
