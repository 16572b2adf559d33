// Stream::Impl: a stream session on a shared model.
//
// Settings are a desired state (guarded by settings_mu, versioned) that any thread may change;
// the frame thread brings the engine up to date at the start of each frame (sync()), rebuilding
// only what changed:
//   prompt / blend / negative   the embeddings (PromptEncoder's cache) and the plan's K/V cache
//   seed / seed blend           the plan's init noise
//   guidance, delta, filter     plain values (a K/V rebuild only where cfg full / initialize
//                               turn guidance on or off)
//   t_index_list, same length   the plan's step constants
//   anything else of PlanKey    another plan: an sd::Stream prepared for that size and layout.
//                               Up to kMaxPlans are kept, so switching back is immediate; a plan
//                               taken up again forgets its frames in flight (reset_state) and
//                               warms up on its next frame.
// Engine work runs with the model's exec mutex held (one frame at a time per model).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/frame_convert.h"
#include "api/model_impl.h"
#include "pipeline/latency_window.h"
#include "pipeline/stream.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff {

namespace detail {

class AsyncWorker;

struct Desired {
  StreamConfig cfg;
  std::vector<WeightedPrompt> prompts;  // a blend; empty: cfg.prompt alone
  Blend prompt_blend = Blend::Linear;
  std::vector<WeightedSeed> seeds;  // a blend; empty: cfg.seed alone
  Blend seed_blend = Blend::Linear;
};

// What a plan (an sd::Stream) is prepared for; a change of any of these needs another plan.
struct PlanKey {
  int width = 0, height = 0, steps = 0, frame_buffer_size = 0;
  size_t t_count = 0;
  CfgType cfg = CfgType::None;
  bool batch = true, add_noise = true, precompute_kv = true, time_stages = false;
  bool operator==(const PlanKey& o) const;
};

struct Plan {
  PlanKey key;
  std::unique_ptr<sd::Stream> stream;
  uint64_t emb_version = 0, noise_version = 0;  // what was applied
  bool needs_warmup = true;
  int64_t last_used = 0;
};

// Checks every setting against the model; throws InvalidArgument naming the first bad one.
void validate(const Desired& d, const Model::Impl& model);

}  // namespace detail

struct Stream::Impl {
  static constexpr size_t kMaxPlans = 4;

  Impl(const Model& model, const StreamConfig& config);
  ~Impl();

  // ---- settings (any thread) ----
  // Edits a copy of the desired state, validates it and commits it (or throws, changing nothing).
  void change(const std::function<void(detail::Desired&)>& edit);
  StreamConfig config() const;

  // ---- frames (the frame thread) ----
  FrameInfo img2img(const ImageView* in, const MutableImageView* out, size_t count);
  FrameInfo img2img_f32(const float* in, float* out, int width, int height);
  FrameInfo txt2img(const MutableImageView* out, size_t count, bool turbo);
  FrameInfo txt2img_f32(float* out, int width, int height, bool turbo);
  // One frame of the asynchronous worker: `in` -> `out` (sized here to the stream's frames).
  FrameInfo img2img_async(const ImageView& in, std::chrono::steady_clock::time_point submitted,
                          int64_t tag, std::vector<uint8_t>& out, int& width, int& height,
                          PixelFormat format);
  void reset();
  StreamStats stats() const;
  void count_async(int64_t submitted, int64_t dropped);  // from the asynchronous worker

  bool worker_running() const;  // the asynchronous worker exists and has not finished

  std::shared_ptr<Model::Impl> model;
  std::unique_ptr<detail::AsyncWorker> async;

 private:
  struct Run;  // one frame's bookkeeping
  void sync();
  detail::Plan& create_plan(const detail::PlanKey& key, const detail::Desired& d);
  void apply(detail::Plan& p, const detail::Desired& d);
  void apply_noise(detail::Plan& p, const detail::Desired& d);
  void compute_embeddings(const detail::Desired& d);
  // Runs img2img on the plan's input buffer (filled by the caller): warm-up, filter, model.
  sd::Tensor run_img2img(detail::Plan& p, FrameInfo& info);
  // txt2img on the active plan (the checks of one_step_turbo's needs first).
  sd::Tensor run_txt2img(detail::Plan& p, bool turbo, FrameInfo& info);
  // The active plan after sync(); throws InvalidArgument unless the caller's `count` outputs (or
  // f32 buffers of width x height) fit its frames.
  detail::Plan& plan_for(const MutableImageView* out, size_t count, const char* what);
  detail::Plan& plan_for(int width, int height, const char* what);
  void write_outputs(const detail::Plan& p, const sd::Tensor& y, const MutableImageView* out,
                     size_t count);
  // Latency (from `started`), compute time (from `computing`), index and statistics of a finished
  // frame; async frames also get their tag.
  void record(FrameInfo& info, std::chrono::steady_clock::time_point started,
              std::chrono::steady_clock::time_point computing, bool async_frame, int64_t tag);

  mutable std::mutex settings_mu_;
  detail::Desired desired_;
  uint64_t version_ = 1;

  // Frame-thread state.
  uint64_t applied_version_ = 0;
  sd::Tensor cond_, uncond_;
  std::vector<WeightedPrompt> emb_prompts_;
  Blend emb_blend_ = Blend::Linear;
  std::string emb_negative_;
  int emb_clip_skip_ = 0;
  uint64_t emb_version_ = 0;
  std::vector<WeightedSeed> noise_seeds_;
  Blend noise_blend_ = Blend::Linear;
  uint64_t noise_version_ = 0;
  std::vector<std::unique_ptr<detail::Plan>> plans_;
  detail::Plan* active_ = nullptr;
  int64_t use_clock_ = 0;
  bool warmup_ = true;
  detail::InputConverter converter_;
  std::vector<int64_t> tags_;  // tags of the inputs in flight, oldest first (async)

  // Statistics.
  mutable std::mutex stats_mu_;
  sd::LatencyWindow latency_;
  int64_t frames_in_ = 0, frames_out_ = 0, skipped_ = 0, dropped_ = 0;
  double prepare_ms_ = 0;
  int plan_count_ = 0;
  std::chrono::steady_clock::time_point first_output_;
  std::chrono::steady_clock::time_point last_output_;
};

}  // namespace streamdiff
