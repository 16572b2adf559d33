// FrameQueue: a bounded, thread-safe queue of frames between the stages of a stream (read,
// preprocess, denoise, write), each stage on its own thread.
//
// Two policies for a full queue:
//   Block       the producer waits for room: nothing is dropped or reordered (file input).
//   DropOldest  the oldest queued frame is discarded and counted, the new one is queued: a live
//               source never waits and the consumer always gets the freshest frames.
// close() ends the stream: producers are released (their push returns false), consumers drain
// what is queued and then get std::nullopt. cancel() is close() that also discards the queued
// frames (used to shut a pipeline down after an error).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "io/image.h"

namespace sd {

enum class QueuePolicy { Block, DropOldest };

// One frame on its way through the stages; each stage fills in what the next one needs.
struct Frame {
  int64_t index = 0;     // position in the input (0, 1, ...)
  std::string name;      // source name (e.g. the input file name), for naming outputs
  std::string path;      // where the input is read from / the output goes, if files are used
  Image image;           // decoded input, or the output image
  Tensor tensor;         // preprocessed input, or the denoised output (host f32)
  bool skipped = false;  // the similarity filter skipped the denoiser for this frame
  std::chrono::steady_clock::time_point started;  // when the frame entered the pipeline
};

class FrameQueue {
 public:
  FrameQueue(size_t capacity, QueuePolicy policy);
  FrameQueue(const FrameQueue&) = delete;
  FrameQueue& operator=(const FrameQueue&) = delete;

  // Queues a frame; false (the frame is discarded) once the queue is closed. Block waits for
  // room; DropOldest never waits.
  bool push(Frame frame);
  // The next frame in order; waits while the queue is empty and open; std::nullopt once it is
  // closed and drained (or cancelled).
  std::optional<Frame> pop();
  // The same, giving up after `timeout` (std::nullopt, with closed() still false).
  std::optional<Frame> pop_for(std::chrono::milliseconds timeout);

  void close();
  void cancel();

  bool closed() const;
  size_t size() const;
  size_t capacity() const { return capacity_; }
  QueuePolicy policy() const { return policy_; }
  int64_t dropped() const;  // frames discarded by DropOldest (not by cancel)
  int64_t pushed() const;   // frames accepted by push

 private:
  std::optional<Frame> take_locked();

  const size_t capacity_;
  const QueuePolicy policy_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Frame> frames_;
  bool closed_ = false;
  int64_t dropped_ = 0, pushed_ = 0;
};

}  // namespace sd
