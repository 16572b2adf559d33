// The public Stream: each call guarded (engine errors become streamdiff::Error, the caller's
// OpenMP thread count is restored) and forwarded to Stream::Impl.
#include <cmath>

#include "api/api_common.h"
#include "api/async_worker.h"
#include "api/stream_impl.h"

namespace streamdiff {

using detail::guarded;
using detail::require;

namespace {

Stream::Impl& live(const std::unique_ptr<Stream::Impl>& impl) {
  require(impl != nullptr, "stream: used after being moved from");
  return *impl;
}

}  // namespace

Stream::Stream(const Model& model, const StreamConfig& config)
    : impl_(guarded(Status::InvalidArgument,
                    [&] { return std::make_unique<Impl>(model, config); })) {}
Stream::~Stream() = default;
Stream::Stream(Stream&&) noexcept = default;
Stream& Stream::operator=(Stream&&) noexcept = default;

void Stream::set_prompt(const std::string& prompt) {
  live(impl_).change([&](detail::Desired& d) {
    d.cfg.prompt = prompt;
    d.prompts.clear();
  });
}

void Stream::set_negative_prompt(const std::string& negative_prompt) {
  live(impl_).change([&](detail::Desired& d) { d.cfg.negative_prompt = negative_prompt; });
}

void Stream::set_prompt_blend(const std::vector<WeightedPrompt>& prompts, Blend blend) {
  live(impl_).change([&](detail::Desired& d) {
    require(!prompts.empty(), "prompt blend: no prompts");
    d.prompts = prompts;
    d.prompt_blend = blend;
    d.cfg.prompt = prompts.front().prompt;
  });
}

void Stream::set_seed(uint64_t seed) {
  live(impl_).change([&](detail::Desired& d) {
    d.cfg.seed = seed;
    d.seeds.clear();
  });
}

void Stream::set_seed_blend(const std::vector<WeightedSeed>& seeds, Blend blend) {
  live(impl_).change([&](detail::Desired& d) {
    require(!seeds.empty(), "seed blend: no seeds");
    d.seeds = seeds;
    d.seed_blend = blend;
    d.cfg.seed = seeds.front().seed;
  });
}

void Stream::set_guidance_scale(float guidance_scale) {
  live(impl_).change([&](detail::Desired& d) { d.cfg.guidance_scale = guidance_scale; });
}

void Stream::set_delta(float delta) {
  live(impl_).change([&](detail::Desired& d) { d.cfg.delta = delta; });
}

void Stream::set_similarity_filter(bool enabled, float threshold, int max_skip) {
  live(impl_).change([&](detail::Desired& d) {
    d.cfg.similarity_filter = enabled;
    d.cfg.similarity_threshold = threshold;
    d.cfg.similarity_max_skip = max_skip;
  });
}

void Stream::set_t_index_list(const std::vector<int>& t_index_list) {
  live(impl_).change([&](detail::Desired& d) { d.cfg.t_index_list = t_index_list; });
}

void Stream::set_resolution(int width, int height) {
  live(impl_).change([&](detail::Desired& d) {
    d.cfg.width = width;
    d.cfg.height = height;
  });
}

void Stream::set_cfg_type(CfgType cfg_type) {
  live(impl_).change([&](detail::Desired& d) { d.cfg.cfg_type = cfg_type; });
}

void Stream::set_config(const StreamConfig& config) {
  live(impl_).change([&](detail::Desired& d) {
    if (config.prompt != d.cfg.prompt) d.prompts.clear();
    if (config.seed != d.cfg.seed) d.seeds.clear();
    d.cfg = config;
  });
}

StreamConfig Stream::config() const {
  return live(impl_).config();
}

FrameInfo Stream::img2img(const ImageView& input, const MutableImageView& output) {
  return img2img(&input, &output, 1);
}

FrameInfo Stream::img2img(const ImageView* inputs, const MutableImageView* outputs, size_t count) {
  Impl& s = live(impl_);
  require(!s.worker_running(), "img2img: the stream is in asynchronous mode (stop() it first)");
  return guarded(Status::Internal, [&] { return s.img2img(inputs, outputs, count); });
}

FrameInfo Stream::img2img_f32(const float* input, float* output, int width, int height) {
  Impl& s = live(impl_);
  require(!s.worker_running(), "img2img_f32: the stream is in asynchronous mode (stop() it first)");
  return guarded(Status::Internal, [&] { return s.img2img_f32(input, output, width, height); });
}

FrameInfo Stream::txt2img(const MutableImageView& output, bool one_step_turbo) {
  return txt2img(&output, 1, one_step_turbo);
}

FrameInfo Stream::txt2img(const MutableImageView* outputs, size_t count, bool one_step_turbo) {
  Impl& s = live(impl_);
  require(!s.worker_running(), "txt2img: the stream is in asynchronous mode (stop() it first)");
  return guarded(Status::Internal, [&] { return s.txt2img(outputs, count, one_step_turbo); });
}

FrameInfo Stream::txt2img_f32(float* output, int width, int height, bool one_step_turbo) {
  Impl& s = live(impl_);
  require(!s.worker_running(), "txt2img_f32: the stream is in asynchronous mode (stop() it first)");
  return guarded(Status::Internal,
                 [&] { return s.txt2img_f32(output, width, height, one_step_turbo); });
}

void Stream::start(const AsyncOptions& options) {
  Impl& s = live(impl_);
  require(options.queue_capacity >= 1 && options.queue_capacity <= 64,
          "start: queue_capacity must be in [1, 64], got ", options.queue_capacity);
  require(options.output_capacity >= 1 && options.output_capacity <= 64,
          "start: output_capacity must be in [1, 64], got ", options.output_capacity);
  require(options.policy == QueuePolicy::Block || options.policy == QueuePolicy::DropOldest,
          "start: unknown queue policy ", int(options.policy));
  require(bytes_per_pixel(options.output_format) > 0, "start: unknown output format ",
          int(options.output_format));
  require(s.config().frame_buffer_size == 1,
          "start: the asynchronous mode takes one frame per call (frame_buffer_size is ",
          s.config().frame_buffer_size, ")");
  if (s.async) {
    require(!s.async->running(), "start: the asynchronous worker is already running");
    s.async.reset();
  }
  s.async = std::make_unique<detail::AsyncWorker>(s, options);
}

bool Stream::submit(const ImageView& input, int64_t tag) {
  Impl& s = live(impl_);
  if (!s.async) throw Error(Status::Closed, "submit: start() the asynchronous mode first");
  return guarded(Status::Internal, [&] { return s.async->submit(input, tag); });
}

bool Stream::poll(const MutableImageView& output, FrameInfo* info, int timeout_ms) {
  Impl& s = live(impl_);
  if (!s.async) throw Error(Status::Closed, "poll: start() the asynchronous mode first");
  return guarded(Status::Internal, [&] { return s.async->poll(output, info, timeout_ms); });
}

void Stream::end_input() {
  Impl& s = live(impl_);
  if (!s.async) throw Error(Status::Closed, "end_input: start() the asynchronous mode first");
  s.async->end_input();
}

void Stream::stop() {
  Impl& s = live(impl_);
  if (!s.async) return;
  guarded(Status::Internal, [&] { s.async->stop(); });
}

bool Stream::running() const {
  const Impl& s = live(impl_);
  return s.async && s.async->running();
}

void Stream::reset() {
  Impl& s = live(impl_);
  require(!running(), "reset: stop() the asynchronous worker first");
  guarded(Status::Internal, [&] { s.reset(); });
}

StreamStats Stream::stats() const {
  return live(impl_).stats();
}

}  // namespace streamdiff
