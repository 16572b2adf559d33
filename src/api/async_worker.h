// AsyncWorker: the asynchronous mode of a Stream. One worker thread runs the model between two
// bounded queues:
//
//   submit (host thread) -> [inputs] -> worker: Stream::Impl::img2img_async -> [outputs] -> poll
//                                                                          or -> on_output callback
//
// Slots (pixel buffers) circulate between the queues and two free lists, so after the first
// frames of a given size nothing is allocated per frame. DropOldest discards the oldest queued
// input (a slow denoiser) or undelivered output (a slow poller); the slot goes back to its free
// list and the drop is counted. An error on the worker stops it; stop() rethrows it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "pipeline/bounded_queue.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff {
namespace detail {

class AsyncWorker {
 public:
  AsyncWorker(Stream::Impl& stream, const AsyncOptions& options);
  ~AsyncWorker();  // stop(), keeping any error to itself
  AsyncWorker(const AsyncWorker&) = delete;
  AsyncWorker& operator=(const AsyncWorker&) = delete;

  bool submit(const ImageView& input, int64_t tag);
  void end_input() { in_.close(); }
  bool poll(const MutableImageView& output, FrameInfo* info, int timeout_ms);
  void stop();  // drops queued inputs, joins the worker; rethrows its error
  bool running() const { return !finished_.load(); }

 private:
  struct InSlot {
    std::vector<uint8_t> pixels;  // packed rows
    int width = 0, height = 0;
    PixelFormat format = PixelFormat::RGB8;
    int64_t tag = -1;
    std::chrono::steady_clock::time_point submitted;
  };
  struct OutSlot {
    std::vector<uint8_t> pixels;  // packed rows in options.output_format
    int width = 0, height = 0;
    FrameInfo info;
  };
  void run();
  void fail(std::exception_ptr e);
  std::optional<OutSlot> next_output(int timeout_ms);  // pending_, else the queue

  Stream::Impl& stream_;
  AsyncOptions options_;
  sd::BoundedQueue<InSlot> free_in_, in_;
  sd::BoundedQueue<OutSlot> free_out_, out_;
  std::optional<OutSlot> pending_;  // taken by a poll whose buffer did not fit; given next
  std::mutex error_mu_;
  std::exception_ptr error_;
  std::atomic<bool> finished_{false};
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace detail
}  // namespace streamdiff
