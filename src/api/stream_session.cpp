// Stream::Impl: settings, plans and the synchronous frame path (see stream_impl.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "api/api_common.h"
#include "api/async_worker.h"
#include "api/stream_impl.h"
#include "pipeline/blending.h"

namespace streamdiff {

using detail::Desired;
using detail::Plan;
using detail::PlanKey;
using detail::require;
using Clock = std::chrono::steady_clock;

namespace detail {

namespace {

constexpr int kMaxSteps = 50;  // the LCM schedule's original_inference_steps

PlanKey key_of(const StreamConfig& c) {
  PlanKey k;
  k.width = c.width;
  k.height = c.height;
  k.steps = c.num_inference_steps;
  k.frame_buffer_size = c.frame_buffer_size;
  k.t_count = c.t_index_list.size();
  k.cfg = c.cfg_type;
  k.batch = c.use_denoising_batch;
  k.add_noise = c.do_add_noise;
  k.precompute_kv = c.precompute_kv;
  k.time_stages = c.time_stages;
  return k;
}

sd::StreamSettings settings_of(const StreamConfig& c) {
  sd::StreamSettings s;
  s.width = c.width;
  s.height = c.height;
  s.t_index_list = c.t_index_list;
  s.num_inference_steps = c.num_inference_steps;
  s.frame_buffer_size = c.frame_buffer_size;
  s.use_denoising_batch = c.use_denoising_batch;
  s.cfg_type = sd::CfgType(int(c.cfg_type));
  s.guidance_scale = c.guidance_scale;
  s.delta = c.delta;
  s.do_add_noise = c.do_add_noise;
  s.seed = c.seed;
  s.similar_image_filter = c.similarity_filter;
  s.similar_image_filter_threshold = c.similarity_threshold;
  s.similar_image_filter_max_skip_frame = c.similarity_max_skip;
  s.precompute_kv = c.precompute_kv;
  s.time_stages = c.time_stages;
  return s;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<float> weights_of(const std::vector<WeightedPrompt>& p) {
  std::vector<float> w;
  for (const WeightedPrompt& e : p) w.push_back(e.weight);
  return w;
}
std::vector<float> weights_of(const std::vector<WeightedSeed>& s) {
  std::vector<float> w;
  for (const WeightedSeed& e : s) w.push_back(e.weight);
  return w;
}

bool same(const std::vector<WeightedPrompt>& a, const std::vector<WeightedPrompt>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](auto& x, auto& y) {
           return x.prompt == y.prompt && x.weight == y.weight;
         });
}
bool same(const std::vector<WeightedSeed>& a, const std::vector<WeightedSeed>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](auto& x, auto& y) {
           return x.seed == y.seed && x.weight == y.weight;
         });
}

// The prompts / seeds a desired state blends (a single one as a blend of one).
std::vector<WeightedPrompt> prompts_of(const Desired& d) {
  return d.prompts.empty() ? std::vector<WeightedPrompt>{{d.cfg.prompt, 1.f}} : d.prompts;
}
std::vector<WeightedSeed> seeds_of(const Desired& d) {
  return d.seeds.empty() ? std::vector<WeightedSeed>{{d.cfg.seed, 1.f}} : d.seeds;
}

void check_blend(const char* what, size_t count, const std::vector<float>& weights, Blend mode) {
  require(count >= 1, what, ": no entries");
  require(mode == Blend::Linear || mode == Blend::Slerp, what, ": unknown blend mode ", int(mode));
  try {
    sd::normalized_weights(weights, what);
  } catch (const sd::Error& e) {
    throw Error(Status::InvalidArgument, e.what());
  }
  require(mode != Blend::Slerp || count == 2, what, ": slerp blends exactly two entries, got ",
          count, " (use linear)");
}

}  // namespace

bool PlanKey::operator==(const PlanKey& o) const {
  return width == o.width && height == o.height && steps == o.steps &&
         frame_buffer_size == o.frame_buffer_size && t_count == o.t_count && cfg == o.cfg &&
         batch == o.batch && add_noise == o.add_noise && precompute_kv == o.precompute_kv &&
         time_stages == o.time_stages;
}

void validate(const Desired& d, const Model::Impl& model) {
  const StreamConfig& c = d.cfg;
  const int m = model.info.size_multiple;
  require(c.width > 0 && c.height > 0 && c.width % m == 0 && c.height % m == 0, "width ", c.width,
          " and height ", c.height, " must be positive multiples of ", m, " for this model");
  require(c.width <= 4096 && c.height <= 4096, "width ", c.width, " and height ", c.height,
          " exceed 4096");
  require(c.num_inference_steps >= 1 && c.num_inference_steps <= kMaxSteps,
          "num_inference_steps must be in [1, ", kMaxSteps, "], got ", c.num_inference_steps);
  require(!c.t_index_list.empty(), "t_index_list needs at least one index");
  for (size_t i = 0; i < c.t_index_list.size(); ++i) {
    const int t = c.t_index_list[i];
    require(t >= 0 && t < c.num_inference_steps, "t_index ", t, " must be in [0, ",
            c.num_inference_steps, ") (num_inference_steps)");
    require(i == 0 || t > c.t_index_list[i - 1], "t_index_list must be strictly ascending, got ",
            c.t_index_list[i - 1], " then ", t);
  }
  require(c.frame_buffer_size >= 1 && c.frame_buffer_size <= 16,
          "frame_buffer_size must be in [1, 16], got ", c.frame_buffer_size);
  require(int(c.cfg_type) >= 0 && int(c.cfg_type) <= 3, "unknown cfg_type ", int(c.cfg_type));
  require(std::isfinite(c.guidance_scale) && c.guidance_scale >= 0,
          "guidance_scale must be finite and >= 0, got ", c.guidance_scale);
  require(std::isfinite(c.delta), "delta must be finite, got ", c.delta);
  require(c.similarity_threshold > 0 && c.similarity_threshold <= 1,
          "similarity_threshold must be in (0, 1], got ", c.similarity_threshold);
  require(c.similarity_max_skip >= 0, "similarity_max_skip must be >= 0, got ",
          c.similarity_max_skip);
  const int layers = model.text_layers();
  require(c.clip_skip >= 0 && (layers == 0 || c.clip_skip < layers), "clip_skip must be in [0, ",
          layers > 0 ? layers - 1 : 0, "] for this model's ", layers, "-layer text encoder, got ",
          c.clip_skip);
  if (!d.prompts.empty())
    check_blend("prompt blend", d.prompts.size(), weights_of(d.prompts), d.prompt_blend);
  if (!d.seeds.empty())
    check_blend("seed blend", d.seeds.size(), weights_of(d.seeds), d.seed_blend);
}

}  // namespace detail

// ---- construction and settings ------------------------------------------------------------

Stream::Impl::Impl(const Model& m, const StreamConfig& config) : model(ModelAccess::impl(m)) {
  require(model != nullptr, "stream: the model is empty (moved from)");
  desired_.cfg = config;
  detail::validate(desired_, *model);
  std::lock_guard<std::mutex> exec(model->exec);
  sync();  // prepares the first plan now, so that errors surface here
}

Stream::Impl::~Impl() {
  async.reset();  // stop and join the worker before the plans it uses go away
}

void Stream::Impl::change(const std::function<void(Desired&)>& edit) {
  std::lock_guard<std::mutex> lock(settings_mu_);
  Desired d = desired_;
  edit(d);
  detail::validate(d, *model);
  desired_ = std::move(d);
  ++version_;
}

StreamConfig Stream::Impl::config() const {
  std::lock_guard<std::mutex> lock(settings_mu_);
  return desired_.cfg;
}

// ---- plans ------------------------------------------------------------------------------------

void Stream::Impl::compute_embeddings(const Desired& d) {
  const std::vector<WeightedPrompt> prompts = detail::prompts_of(d);
  if (cond_.defined() && detail::same(prompts, emb_prompts_) && d.prompt_blend == emb_blend_ &&
      d.cfg.negative_prompt == emb_negative_ && d.cfg.clip_skip == emb_clip_skip_)
    return;
  std::vector<sd::Tensor> embs;
  std::vector<const float*> ptrs;
  for (const WeightedPrompt& p : prompts) {
    embs.push_back(model->encode_prompt(p.prompt, d.cfg.clip_skip));
    ptrs.push_back(embs.back().data_as<float>());
  }
  if (embs.size() == 1) {
    cond_ = embs[0];
  } else {
    cond_ = sd::Tensor::host(embs[0].shape(), sd::DType::F32);
    sd::blend(d.prompt_blend == Blend::Slerp ? sd::BlendMode::Slerp : sd::BlendMode::Linear, ptrs,
              detail::weights_of(prompts), cond_.numel(), cond_.data_as<float>(), "prompt blend");
  }
  uncond_ = model->encode_prompt(d.cfg.negative_prompt, d.cfg.clip_skip);
  emb_prompts_ = prompts;
  emb_blend_ = d.prompt_blend;
  emb_negative_ = d.cfg.negative_prompt;
  emb_clip_skip_ = d.cfg.clip_skip;
  ++emb_version_;
}

void Stream::Impl::apply_noise(Plan& p, const Desired& d) {
  const std::vector<WeightedSeed> seeds = detail::seeds_of(d);
  p.stream->set_seed(seeds[0].seed);  // the generator (txt2img's latents) follows the first seed
  if (seeds.size() > 1) {
    const sd::Tensor& init = p.stream->init_noise();
    std::vector<sd::Tensor> noises;
    std::vector<const float*> ptrs;
    for (const WeightedSeed& s : seeds) {
      noises.push_back(sd::Tensor::host(init.shape(), sd::DType::F32));
      p.stream->noise_for_seed(s.seed, noises.back());
      ptrs.push_back(noises.back().data_as<float>());
    }
    sd::Tensor blended = sd::Tensor::host(init.shape(), sd::DType::F32);
    sd::blend(d.seed_blend == Blend::Slerp ? sd::BlendMode::Slerp : sd::BlendMode::Linear, ptrs,
              detail::weights_of(seeds), blended.numel(), blended.data_as<float>(), "seed blend");
    p.stream->set_init_noise(blended);
  }
  p.noise_version = noise_version_;
}

Plan& Stream::Impl::create_plan(const PlanKey& key, const Desired& d) {
  if (plans_.size() >= kMaxPlans) {  // forget the least recently used plan (not the active one)
    auto lru = std::min_element(plans_.begin(), plans_.end(), [&](const auto& a, const auto& b) {
      const bool a_active = a.get() == active_, b_active = b.get() == active_;
      if (a_active != b_active) return b_active;
      return a->last_used < b->last_used;
    });
    plans_.erase(lru);
  }
  auto p = std::make_unique<Plan>();
  p->key = key;
  p->stream = std::make_unique<sd::Stream>(*model->backend, *model->unet, *model->codec, nullptr,
                                           detail::settings_of(d.cfg));
  p->stream->prepare_embeddings(cond_, uncond_);
  p->emb_version = emb_version_;
  if (d.seeds.empty())
    p->noise_version = noise_version_;  // prepare drew cfg.seed's noise
  else
    apply_noise(*p, d);
  plans_.push_back(std::move(p));
  return *plans_.back();
}

void Stream::Impl::apply(Plan& p, const Desired& d) {
  sd::Stream& s = *p.stream;
  const sd::StreamSettings& now = s.settings();
  const StreamConfig& c = d.cfg;
  if (p.emb_version != emb_version_) {
    s.update_embeddings(cond_, uncond_);
    p.emb_version = emb_version_;
  }
  if (now.guidance_scale != c.guidance_scale || now.delta != c.delta)
    s.set_guidance(c.guidance_scale, c.delta);
  if (now.similar_image_filter != c.similarity_filter ||
      now.similar_image_filter_threshold != c.similarity_threshold ||
      now.similar_image_filter_max_skip_frame != c.similarity_max_skip)
    s.set_similarity_filter(c.similarity_filter, c.similarity_threshold, c.similarity_max_skip);
  if (now.t_index_list != c.t_index_list) s.update_t_index_list(c.t_index_list);
  if (p.noise_version != noise_version_) apply_noise(p, d);
}

void Stream::Impl::sync() {
  Desired d;
  uint64_t v;
  {
    std::lock_guard<std::mutex> lock(settings_mu_);
    v = version_;
    if (v == applied_version_ && active_) return;
    d = desired_;
  }
  const auto t0 = Clock::now();
  compute_embeddings(d);
  const std::vector<WeightedSeed> seeds = detail::seeds_of(d);
  if (!detail::same(seeds, noise_seeds_) || d.seed_blend != noise_blend_) {
    noise_seeds_ = seeds;
    noise_blend_ = d.seed_blend;
    ++noise_version_;
  }
  const PlanKey key = detail::key_of(d.cfg);
  Plan* p = nullptr;
  for (auto& q : plans_)
    if (q->key == key) p = q.get();
  const bool fresh = p == nullptr;
  if (fresh) p = &create_plan(key, d);
  apply(*p, d);
  if (p != active_) {
    if (!fresh) p->stream->reset_state();
    p->needs_warmup = true;
    tags_.clear();
    active_ = p;
  }
  p->last_used = ++use_clock_;
  warmup_ = d.cfg.warmup;
  applied_version_ = v;
  std::lock_guard<std::mutex> lock(stats_mu_);
  prepare_ms_ += detail::ms_since(t0);
  plan_count_ = int(plans_.size());
}

void Stream::Impl::reset() {
  std::lock_guard<std::mutex> exec(model->exec);
  sync();
  active_->stream->reset_state();
  active_->needs_warmup = true;
  tags_.clear();
}

// ---- frames -----------------------------------------------------------------------------------

sd::Tensor Stream::Impl::run_img2img(Plan& p, FrameInfo& info) {
  sd::Stream& s = *p.stream;
  const sd::Tensor& in = s.input_buffer();
  if (p.needs_warmup) {
    if (warmup_) s.warm_up(in);
    p.needs_warmup = false;
  }
  const int64_t skipped_before = s.skipped_frames();
  sd::Tensor out = s.img2img_tensor(in);
  info.skipped = s.skipped_frames() > skipped_before;
  const sd::StageTimings& t = s.last_timings();
  info.encode_ms = t.encode_ms;
  info.unet_ms = t.unet_ms;
  info.decode_ms = t.decode_ms;
  return out;
}

void Stream::Impl::record(FrameInfo& info, Clock::time_point started, Clock::time_point computing,
                          bool async_frame, int64_t tag) {
  const auto now = Clock::now();
  info.latency_ms = std::chrono::duration<double, std::milli>(now - started).count();
  info.compute_ms = std::chrono::duration<double, std::milli>(now - computing).count();
  if (async_frame) {  // the input this output shows: n − 1 processed inputs back
    info.tag = tag;
    if (!info.skipped || tags_.empty()) {
      const size_t lag = active_->stream->settings().use_denoising_batch
                             ? active_->stream->settings().t_index_list.size() - 1
                             : 0;
      tags_.push_back(tag);
      while (tags_.size() > lag + 1) tags_.erase(tags_.begin());
    }
    info.shown_tag = tags_.front();
  }
  std::lock_guard<std::mutex> lock(stats_mu_);
  if (!async_frame) ++frames_in_;  // async inputs are counted when submitted
  if (frames_out_ == 0) first_output_ = now;
  last_output_ = now;
  info.index = frames_out_++;
  if (info.skipped) ++skipped_;
  latency_.add(info.latency_ms);
}

Plan& Stream::Impl::plan_for(const MutableImageView* out, size_t count, const char* what) {
  require(out != nullptr, what, ": null output array");
  sync();
  const sd::StreamSettings& s = active_->stream->settings();
  require(count == size_t(s.frame_buffer_size), what, ": ", count,
          " outputs given, frame_buffer_size is ", s.frame_buffer_size);
  for (size_t i = 0; i < count; ++i) detail::check_view(out[i], s.width, s.height, what);
  return *active_;
}

Plan& Stream::Impl::plan_for(int width, int height, const char* what) {
  sync();
  const sd::StreamSettings& s = active_->stream->settings();
  require(width == s.width && height == s.height, what, ": buffers of ", width, "x", height,
          ", the stream's frames are ", s.width, "x", s.height);
  return *active_;
}

void Stream::Impl::write_outputs(const Plan& p, const sd::Tensor& y, const MutableImageView* out,
                                 size_t count) {
  const sd::StreamSettings& s = p.stream->settings();
  const int64_t frame = int64_t(s.width) * s.height * 3;
  for (size_t i = 0; i < count; ++i) detail::write_output(y.data_as<float>() + i * frame, out[i]);
}

FrameInfo Stream::Impl::img2img(const ImageView* in, const MutableImageView* out, size_t count) {
  require(in != nullptr, "img2img: null input array");
  const auto started = Clock::now();
  std::lock_guard<std::mutex> exec(model->exec);
  const auto computing = Clock::now();  // after any wait for another stream's frame
  Plan& p = plan_for(out, count, "img2img output");
  const sd::StreamSettings& s = p.stream->settings();
  for (size_t i = 0; i < count; ++i) detail::check_view(in[i], "img2img input");
  const int64_t frame = int64_t(s.width) * s.height * 3;
  float* buf = p.stream->input_buffer().data_as<float>();
  for (size_t i = 0; i < count; ++i) converter_.convert(in[i], s.width, s.height, buf + i * frame);
  FrameInfo info;
  write_outputs(p, run_img2img(p, info), out, count);
  record(info, started, computing, false, -1);
  return info;
}

sd::Tensor Stream::Impl::run_txt2img(Plan& p, bool turbo, FrameInfo& info) {
  const sd::StreamSettings& s = p.stream->settings();
  require(!turbo || (s.t_index_list.size() == 1 &&
                     (s.cfg_type == sd::CfgType::None || s.guidance_scale <= 1.f)),
          "txt2img one_step_turbo needs one t_index (got ", s.t_index_list.size(),
          ") and no guidance (cfg_type none or guidance_scale <= 1)");
  sd::Tensor y = turbo ? p.stream->txt2img_sd_turbo() : p.stream->txt2img();
  const sd::StageTimings& t = p.stream->last_timings();
  info.encode_ms = t.encode_ms, info.unet_ms = t.unet_ms, info.decode_ms = t.decode_ms;
  return y;
}

FrameInfo Stream::Impl::img2img_f32(const float* in, float* out, int width, int height) {
  require(in != nullptr && out != nullptr, "img2img_f32: null input or output");
  const auto started = Clock::now();
  std::lock_guard<std::mutex> exec(model->exec);
  const auto computing = Clock::now();  // after any wait for another stream's frame
  Plan& p = plan_for(width, height, "img2img_f32");
  const sd::Tensor& buf = p.stream->input_buffer();
  float* dst = buf.data_as<float>();
  for (int64_t i = 0; i < buf.numel(); ++i) dst[i] = 2.f * in[i] - 1.f;
  FrameInfo info;
  const sd::Tensor y = run_img2img(p, info);
  std::memcpy(out, y.data(), y.nbytes());
  record(info, started, computing, false, -1);
  return info;
}

FrameInfo Stream::Impl::img2img_async(const ImageView& in, Clock::time_point submitted, int64_t tag,
                                      std::vector<uint8_t>& out, int& width, int& height,
                                      PixelFormat format) {
  std::lock_guard<std::mutex> exec(model->exec);
  const auto computing = Clock::now();  // after any wait for another stream's frame
  sync();
  Plan& p = *active_;
  const sd::StreamSettings& s = p.stream->settings();
  require(s.frame_buffer_size == 1,
          "submit: the asynchronous mode takes one frame per call "
          "(frame_buffer_size is ",
          s.frame_buffer_size, ")");
  converter_.convert(in, s.width, s.height, p.stream->input_buffer().data_as<float>());
  FrameInfo info;
  const sd::Tensor y = run_img2img(p, info);
  width = s.width;
  height = s.height;
  out.resize(detail::row_bytes(width, format) * size_t(height));
  detail::write_output(y.data_as<float>(), MutableImageView{out.data(), width, height, 0, format});
  record(info, submitted, computing, true, tag);
  return info;
}

FrameInfo Stream::Impl::txt2img(const MutableImageView* out, size_t count, bool turbo) {
  const auto started = Clock::now();
  std::lock_guard<std::mutex> exec(model->exec);
  const auto computing = Clock::now();  // after any wait for another stream's frame
  Plan& p = plan_for(out, count, "txt2img output");
  FrameInfo info;
  write_outputs(p, run_txt2img(p, turbo, info), out, count);
  record(info, started, computing, false, -1);
  return info;
}

FrameInfo Stream::Impl::txt2img_f32(float* out, int width, int height, bool turbo) {
  require(out != nullptr, "txt2img_f32: null output");
  const auto started = Clock::now();
  std::lock_guard<std::mutex> exec(model->exec);
  const auto computing = Clock::now();  // after any wait for another stream's frame
  Plan& p = plan_for(width, height, "txt2img_f32");
  FrameInfo info;
  const sd::Tensor y = run_txt2img(p, turbo, info);
  std::memcpy(out, y.data(), y.nbytes());
  record(info, started, computing, false, -1);
  return info;
}

StreamStats Stream::Impl::stats() const {
  StreamStats st;
  {
    std::lock_guard<std::mutex> lock(stats_mu_);
    st.frames_in = frames_in_;
    st.frames_out = frames_out_;
    st.skipped = skipped_;
    const double wall = std::chrono::duration<double>(last_output_ - first_output_).count();
    st.fps = frames_out_ > 1 && wall > 0 ? double(frames_out_ - 1) / wall : 0;
    st.latency_mean_ms = latency_.mean();
    st.latency_p50_ms = latency_.percentile(50);
    st.latency_p99_ms = latency_.percentile(99);
    st.latency_max_ms = latency_.max();
    st.prepare_ms = prepare_ms_;
    st.dropped = dropped_;
    st.plans = plan_count_;
  }
  return st;
}

bool Stream::Impl::worker_running() const {
  return async && async->running();
}

void Stream::Impl::count_async(int64_t submitted, int64_t dropped) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  frames_in_ += submitted;
  dropped_ += dropped;
}

}  // namespace streamdiff
