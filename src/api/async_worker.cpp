#include "api/async_worker.h"

#include <omp.h>

#include <cstring>

#include "api/api_common.h"
#include "api/frame_convert.h"
#include "api/stream_impl.h"

namespace streamdiff::detail {

namespace {

std::chrono::milliseconds wait_of(int timeout_ms) {
  return std::chrono::milliseconds(timeout_ms);
}

}  // namespace

AsyncWorker::AsyncWorker(Stream::Impl& stream, const AsyncOptions& options)
    : stream_(stream),
      options_(options),
      free_in_(options.queue_capacity + 2, sd::QueuePolicy::Block),
      in_(options.queue_capacity, sd::QueuePolicy(int(options.policy))),
      free_out_(options.output_capacity + 1, sd::QueuePolicy::Block),
      // Block: room for every slot, so the worker never waits on a push (it waits for a free
      // slot instead, which stop() can release); DropOldest: full at output_capacity.
      out_(options.policy == QueuePolicy::Block ? options.output_capacity + 1
                                                : options.output_capacity,
           sd::QueuePolicy(int(options.policy))) {
  for (size_t i = 0; i < options.queue_capacity + 2; ++i) free_in_.push(InSlot{});
  const size_t outs = options.on_output ? 1 : options.output_capacity + 1;
  for (size_t i = 0; i < outs; ++i) free_out_.push(OutSlot{});
  thread_ = std::thread([this] { run(); });
}

AsyncWorker::~AsyncWorker() {
  try {
    stop();
  } catch (...) {  // the error was the host's to collect with stop()
  }
}

bool AsyncWorker::submit(const ImageView& input, int64_t tag) {
  check_view(input, "submit input");
  std::optional<InSlot> slot = free_in_.pop();
  if (!slot) return false;  // stopped
  const size_t row = row_bytes(input.width, input.format);
  slot->pixels.resize(row * size_t(input.height));
  for (int y = 0; y < input.height; ++y)
    std::memcpy(slot->pixels.data() + size_t(y) * row, input.data + size_t(y) * stride_of(input),
                row);
  slot->width = input.width;
  slot->height = input.height;
  slot->format = input.format;
  slot->tag = tag;
  slot->submitted = std::chrono::steady_clock::now();
  std::optional<InSlot> displaced;
  if (!in_.push(std::move(*slot), &displaced)) return false;
  stream_.count_async(1, displaced ? 1 : 0);
  if (displaced) free_in_.push(std::move(*displaced));
  return true;
}

void AsyncWorker::run() {
  try {
    while (std::optional<InSlot> in = in_.pop()) {
      std::optional<OutSlot> out = free_out_.pop();
      if (!out) break;
      const ImageView view{in->pixels.data(), in->width, in->height, 0, in->format};
      out->info = stream_.img2img_async(view, in->submitted, in->tag, out->pixels, out->width,
                                        out->height, options_.output_format);
      free_in_.push(std::move(*in));
      if (options_.on_output) {
        OmpThreadsGuard keep;  // the callback may use OpenMP with its own settings
        options_.on_output(
            ImageView{out->pixels.data(), out->width, out->height, 0, options_.output_format},
            out->info);
        free_out_.push(std::move(*out));
        continue;
      }
      std::optional<OutSlot> displaced;
      if (!out_.push(std::move(*out), &displaced)) break;
      if (displaced) {
        stream_.count_async(0, 1);
        free_out_.push(std::move(*displaced));
      }
    }
  } catch (...) {
    fail(std::current_exception());
  }
  finished_ = true;  // before out_ closes: a poll that sees the end sees running() false
  free_in_.close();
  out_.close();
}

void AsyncWorker::fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (!error_) error_ = e;
  }
  in_.cancel();
}

std::optional<AsyncWorker::OutSlot> AsyncWorker::next_output(int timeout_ms) {
  if (pending_) {
    std::optional<OutSlot> p = std::move(pending_);
    pending_.reset();
    return p;
  }
  if (std::optional<OutSlot> o = timeout_ms < 0 ? out_.pop() : out_.pop_for(wait_of(timeout_ms)))
    return o;
  // The worker queues its last output before it counts as finished: once it has, a last look
  // finds anything queued after the wait above gave up, so poll's false with running() false
  // means that every output was delivered.
  if (finished_) return out_.pop_for(std::chrono::milliseconds(0));
  return std::nullopt;
}

bool AsyncWorker::poll(const MutableImageView& output, FrameInfo* info, int timeout_ms) {
  std::optional<OutSlot> out = next_output(timeout_ms);
  if (!out) return false;
  try {
    check_view(output, out->width, out->height, "poll output");
  } catch (...) {
    pending_ = std::move(out);  // not lost: the next poll gets it
    throw;
  }
  const ImageView src{out->pixels.data(), out->width, out->height, 0, options_.output_format};
  copy_pixels(src, output);
  if (info) *info = out->info;
  free_out_.push(std::move(*out));
  return true;
}

void AsyncWorker::stop() {
  if (!stopped_) {
    stopped_ = true;
    in_.cancel();
    free_out_.close();  // a worker waiting for an output slot (nobody polls) is released
    if (thread_.joinable()) thread_.join();
    free_in_.close();
  }
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lock(error_mu_);
    e = std::exchange(error_, nullptr);
  }
  if (e) std::rethrow_exception(e);
}

}  // namespace streamdiff::detail
