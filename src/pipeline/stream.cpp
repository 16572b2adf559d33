// The latent arithmetic runs on the host in f32, one torch operation per rounding (no FMA
// contraction), so it follows the reference's float32 tensor arithmetic closely; the latents are
// small (4 channels at 1/8 resolution) next to the models' work.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "pipeline/stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace sd {

namespace {

// torch's draw order is NCHW; the engine's latents are NHWC.
void draw_nhwc(TorchGenerator& gen, std::vector<float>& scratch, float* out, int64_t n, int64_t h,
               int64_t w, int64_t c) {
  scratch.resize(size_t(n * c * h * w));
  gen.randn(scratch.data(), int64_t(scratch.size()));
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p)
        out[(b * h * w + p) * c + k] = scratch[size_t((b * c + k) * h * w + p)];
}

}  // namespace

Stream::Stream(Backend& backend, const UNet& unet, const LatentCodec& vae, PromptEncoder* text,
               StreamSettings settings, LcmSchedulerConfig scheduler)
    : be_(backend),
      unet_(unet),
      vae_(vae),
      text_(text),
      s_(std::move(settings)),
      scheduler_(std::move(scheduler)),
      ssf_(s_.similar_image_filter_threshold, s_.similar_image_filter_max_skip_frame, s_.seed) {
  const int down = vae_.downscale();
  SD_CHECK(s_.width > 0 && s_.height > 0 && s_.width % down == 0 && s_.height % down == 0,
           "stream: width ", s_.width, " and height ", s_.height, " must be positive multiples of ",
           down, " (the VAE's downscale)");
  lh_ = s_.height / down;
  lw_ = s_.width / down;
  const int m = unet_.config().size_multiple();
  SD_CHECK(lh_ % m == 0 && lw_ % m == 0, "stream: width ", s_.width, " and height ", s_.height,
           " must be multiples of ", down * m, " for this UNet (latent multiple ", m, ")");
  lc_ = vae_.latent_channels();
  SD_CHECK(lc_ == unet_.config().in_channels && lc_ == unet_.config().out_channels,
           "stream: the VAE has ", lc_, " latent channels, the UNet takes ",
           unet_.config().in_channels, " and gives ", unet_.config().out_channels);
  SD_CHECK(s_.frame_buffer_size >= 1, "stream: frame_buffer_size ", s_.frame_buffer_size,
           " must be at least 1");
  SD_CHECK(std::isfinite(s_.guidance_scale) && std::isfinite(s_.delta),
           "stream: guidance_scale and delta must be finite");
  slots_ = scheduler_.slots(s_.num_inference_steps, s_.t_index_list);  // checks the indices
  f_ = s_.frame_buffer_size;
  n_ = int64_t(s_.t_index_list.size());
  rows_ = s_.use_denoising_batch ? n_ * f_ : f_;
  row_elems_ = lh_ * lw_ * lc_;
  host_direct_ = be_.device() == Device::CPU && be_.compute_dtype() == DType::F32;
  frame_in_ = Tensor::host(Shape{f_, s_.height, s_.width, 3}, DType::F32);
  out_image_ = Tensor::host(Shape{f_, s_.height, s_.width, 3}, DType::F32);
}

Stream::~Stream() = default;

void Stream::check_prepared(const char* what) const {
  SD_CHECK(prepared_, "stream: ", what, " before prepare()");
}

void Stream::prepare(const std::string& prompt, const std::string& negative_prompt) {
  SD_CHECK(text_ != nullptr,
           "stream: prepare(prompt) needs a text encoder (or use "
           "prepare_embeddings)");
  prepare_embeddings(text_->encode(prompt), text_->encode(negative_prompt));
}

void Stream::build_row_constants() {
  const size_t B = size_t(n_ * f_);
  a_.assign(B, 0), b_.assign(B, 0), cskip_.assign(B, 0), cout_.assign(B, 0);
  a_next_.assign(B, 1), b_next_.assign(B, 1), t_rows_.assign(B, 0);
  for (size_t r = 0; r < B; ++r) {
    const SlotConstants& c = slots_[r / size_t(f_)];
    a_[r] = c.alpha_sqrt, b_[r] = c.beta_sqrt, cskip_[r] = c.c_skip, cout_[r] = c.c_out;
    t_rows_[r] = float(c.timestep);
    if (r + size_t(f_) < B) {
      const SlotConstants& nx = slots_[r / size_t(f_) + 1];
      a_next_[r] = nx.alpha_sqrt, b_next_[r] = nx.beta_sqrt;
    }
  }
  cache_time_embeddings();
}

const std::vector<float>& Stream::pass_timesteps(int64_t rows, const std::vector<float>& t_rows) {
  const int64_t extra = extra_rows(rows);
  std::vector<float>& t = t_scratch_;
  t.assign(t_rows.begin(), t_rows.begin() + extra);
  t.insert(t.end(), t_rows.begin(), t_rows.begin() + rows);
  return t;
}

void Stream::cache_time_embeddings() {
  temb_cache_.clear();
  if (s_.use_denoising_batch) {
    time_embedding_for(pass_timesteps(rows_, t_rows_));
    return;
  }
  for (const SlotConstants& c : slots_)
    time_embedding_for(pass_timesteps(f_, std::vector<float>(size_t(f_), float(c.timestep))));
}

void Stream::build_kv() {
  const int64_t tokens = cond_.dim(0), dim = cond_.dim(1);
  Tensor prompts = Tensor::host(Shape{2, tokens, dim}, DType::F32);
  std::memcpy(prompts.data(), uncond_.data(), uncond_.nbytes());
  std::memcpy(static_cast<char*>(prompts.data()) + cond_.nbytes(), cond_.data(), cond_.nbytes());
  std::vector<int> rows;
  const bool full = guidance_ && s_.cfg_type == CfgType::Full;
  const bool init = guidance_ && s_.cfg_type == CfgType::Initialize;
  if (full) rows.assign(size_t(rows_), 0);
  if (init) rows.assign(size_t(f_), 0);
  rows.insert(rows.end(), size_t(rows_), 1);
  kv_ = UNetKVCache{};
  if (!s_.precompute_kv) {
    pass_states_ = Tensor::host(Shape{int64_t(rows.size()), tokens, dim}, DType::F32);
    for (size_t r = 0; r < rows.size(); ++r)
      std::memcpy(static_cast<char*>(pass_states_.data()) + r * cond_.nbytes(),
                  rows[r] ? cond_.data() : uncond_.data(), cond_.nbytes());
    kv_.batch = int64_t(rows.size());
    kv_.tokens = tokens;
    return;
  }
  {
    Tensor dev = be_.upload(prompts);
    kv_ = unet_.precompute_kv(dev, rows);
  }
  be_.synchronize();
}

Tensor Stream::time_embedding_for(const std::vector<float>& t) const {
  for (const auto& [key, emb] : temb_cache_)
    if (key == t) return emb;
  temb_cache_.emplace_back(t, unet_.time_embedding(t, int64_t(t.size())));
  return temb_cache_.back().second;
}

Tensor Stream::unet_pass(const Tensor& x, const std::vector<float>& t) const {
  // The per-frame path: K/V and time embedding precomputed, no upload or wait inside the pass.
  if (s_.precompute_kv) return unet_.forward(x, time_embedding_for(t), kv_);
  Tensor states = be_.alloc(pass_states_.shape());
  be_.copy_from_host(pass_states_, states);
  return unet_.forward(x, t, states);
}

void Stream::prepare_embeddings(const Tensor& cond, const Tensor& uncond) {
  const int64_t d = unet_.config().cross_attention_dim;
  for (const Tensor* t : {&cond, &uncond})
    SD_CHECK(t->rank() == 2 && t->dim(1) == d && t->dtype() == DType::F32 &&
                 t->device() == Device::CPU && t->shape() == cond.shape(),
             "stream: prompt embeddings ", t->shape().str(), " must be host f32 [tokens, ", d,
             "] (the UNet's cross_attention_dim), cond and uncond alike");
  prepared_ = false;
  cond_ = cond.to_host_dtype(DType::F32);
  uncond_ = uncond.to_host_dtype(DType::F32);
  guidance_ = s_.cfg_type != CfgType::None && s_.guidance_scale > 1.f;
  build_row_constants();

  const Shape lat{rows_, lh_, lw_, lc_};
  gen_.seed_wide(s_.seed);
  std::vector<float> scratch;
  init_noise_ = Tensor::host(lat, DType::F32);
  draw_nhwc(gen_, scratch, init_noise_.data_as<float>(), rows_, lh_, lw_, lc_);
  stock_ = Tensor::host(lat, DType::F32);
  buffer_ = Tensor::host(Shape{std::max<int64_t>((n_ - 1) * f_, 1), lh_, lw_, lc_}, DType::F32);
  const int64_t unet_rows = 2 * rows_;  // the most any cfg_type needs (full)
  x_ = Tensor::host(Shape{unet_rows, lh_, lw_, lc_}, DType::F32);
  eps_ = Tensor::host(Shape{unet_rows, lh_, lw_, lc_}, DType::F32);
  x0_ = Tensor::host(lat, DType::F32);
  out_latent_ = Tensor::host(Shape{f_, lh_, lw_, lc_}, DType::F32);
  noise_tmp_ = Tensor::host(lat, DType::F32);
  has_output_ = false;
  skipped_ = 0;
  t_scratch_.reserve(size_t(unet_rows));
  step_t_.reserve(size_t(rows_));
  draw_scratch_.reserve(size_t(rows_ * row_elems_));
  xin_scratch_.reserve(size_t(f_ * row_elems_));
  ssf_.set_threshold(s_.similar_image_filter_threshold);
  ssf_.set_max_skip_frame(s_.similar_image_filter_max_skip_frame);
  ssf_.reset(frame_in_.numel());
  build_kv();
  plan_arena();
  prepared_ = true;
}

void Stream::plan_arena() {
  Arena& arena = be_.arena();
  be_.synchronize();
  arena.reset_stats();
  // The arena calls of a frame, in a frame's order and with its lifetimes (encode_input,
  // guided_eps, decode_output): the placement is deterministic, so every frame then fits.
  {
    Tensor z = vae_.encode(to_device(frame_in_));
    be_.synchronize();
  }
  {
    float* x = x_.data_as<float>();
    Tensor eps = unet_pass(to_device(Tensor::wrap(Shape{kv_.batch, lh_, lw_, lc_}, DType::F32, x)),
                           temb_cache_.front().first);
    be_.synchronize();
  }
  {
    Tensor y =
        vae_.decode(to_device(Tensor::wrap(Shape{f_, lh_, lw_, lc_}, DType::F32, x_.data())));
    be_.synchronize();
  }
  arena.reserve(arena.peak());
}

void Stream::reset_state() {
  check_prepared("reset_state");
  std::memset(stock_.data(), 0, stock_.nbytes());
  std::memset(buffer_.data(), 0, buffer_.nbytes());
  ssf_.reset(frame_in_.numel());
  has_output_ = false;
  // The generator as prepare() leaves it: seeded, then advanced past init_noise's draw.
  gen_.seed_wide(s_.seed);
  draw_nhwc(gen_, draw_scratch_, noise_tmp_.data_as<float>(), rows_, lh_, lw_, lc_);
}

void Stream::set_seed(uint64_t seed) {
  s_.seed = seed;
  if (!prepared_) return;
  gen_.seed_wide(seed);
  std::vector<float> scratch;
  draw_nhwc(gen_, scratch, init_noise_.data_as<float>(), rows_, lh_, lw_, lc_);
}

void Stream::noise_for_seed(uint64_t seed, Tensor& out) const {
  SD_CHECK(out.shape() == (Shape{rows_, lh_, lw_, lc_}) && out.dtype() == DType::F32 &&
               out.device() == Device::CPU,
           "stream: noise buffer ", out.shape().str(), " must be host f32 [", rows_, ", ", lh_,
           ", ", lw_, ", ", lc_, "]");
  TorchGenerator gen;
  gen.seed_wide(seed);
  std::vector<float> scratch;
  draw_nhwc(gen, scratch, out.data_as<float>(), rows_, lh_, lw_, lc_);
}

Tensor Stream::to_device(const Tensor& host) const {
  if (host_direct_) return host;
  Tensor dev = be_.alloc(host.shape());
  be_.copy_from_host(host, dev);
  return dev;
}

float* Stream::host_view(const Tensor& dev, float* staging) const {
  if (host_direct_ && dev.dtype() == DType::F32) return dev.data_as<float>();
  be_.copy_to_host(dev, Tensor::wrap(dev.shape(), DType::F32, staging));
  return staging;
}

int64_t Stream::extra_rows(int64_t rows) const {
  if (!guidance_) return 0;
  return s_.cfg_type == CfgType::Full ? rows : s_.cfg_type == CfgType::Initialize ? f_ : 0;
}

float* Stream::pass_rows(int64_t rows) {
  return x_.data_as<float>() + extra_rows(rows) * row_elems_;
}

const float* Stream::guided_eps(int64_t rows, const std::vector<float>& t_rows) {
  const int64_t E = row_elems_;
  const bool full = guidance_ && s_.cfg_type == CfgType::Full;
  const bool init = guidance_ && s_.cfg_type == CfgType::Initialize;
  const int64_t extra = extra_rows(rows);
  const int64_t total = extra + rows;
  SD_CHECK(kv_.batch == total, "stream: internal: K/V cache for ", kv_.batch, " rows, pass has ",
           total);
  float* in = x_.data_as<float>();
  // The unconditional rows: a copy of every row (full) or of the first f (initialize).
  if (extra > 0) std::memcpy(in, in + extra * E, size_t(extra * E) * sizeof(float));
  const std::vector<float>& t = pass_timesteps(rows, t_rows);
  eps_dev_ = Tensor{};  // the previous pass's output goes back to the arena first, as planned
  eps_dev_ = unet_pass(to_device(Tensor::wrap(Shape{total, lh_, lw_, lc_}, DType::F32, in)), t);
  float* out = host_view(eps_dev_, eps_.data_as<float>());
  be_.synchronize();
  if (s_.time_stages) {
    const auto now = std::chrono::steady_clock::now();
    timings_.unet_ms += std::chrono::duration<double, std::milli>(now - unet_t0_).count();
    unet_t0_ = now;
  }
  float* s = stock_.data_as<float>();
  if (init) std::memcpy(s, out, size_t(f_ * E) * sizeof(float));  // S[0:f] ← uncond rows
  if (guidance_) {
    // In place into the front rows: row i's write never lands on a conditional value
    // (out[extra * E + j], j >= i) still to be read.
    const float* eps_c = out + extra * E;
    const float g = s_.guidance_scale;
    for (int64_t i = 0; i < rows * E; ++i) {
      const float u = full ? out[i] : s[i] * s_.delta;
      const float diff = eps_c[i] - u;
      const float scaled = g * diff;
      out[i] = u + scaled;
    }
  }
  return out;
}

void Stream::denoise_batched(const float* x_in) {
  const int64_t E = row_elems_, B = rows_;
  float* X = pass_rows(B);  // the batch [x_in; buffer], where the UNet reads it
  std::memcpy(X, x_in, size_t(f_ * E) * sizeof(float));
  if (n_ > 1) std::memcpy(X + f_ * E, buffer_.data(), size_t((B - f_) * E) * sizeof(float));
  const float* N = init_noise_.data_as<float>();
  float* S = stock_.data_as<float>();
  if (n_ > 1) {
    std::memmove(S + f_ * E, S, size_t((B - f_) * E) * sizeof(float));
    for (int64_t r = 0; r < f_; ++r) std::memcpy(S + r * E, N, size_t(E) * sizeof(float));
  }
  const float* eps = guided_eps(B, t_rows_);
  float* x0 = x0_.data_as<float>();
  const bool rcfg = s_.cfg_type == CfgType::Self || s_.cfg_type == CfgType::Initialize;
  for (int64_t r = 0; r < B; ++r) {
    const float a = a_[size_t(r)], b = b_[size_t(r)];
    const float co = cout_[size_t(r)], cs = cskip_[size_t(r)];
    const float an = a_next_[size_t(r)], bn = b_next_[size_t(r)];
    const float* Nn = N + ((r + f_) % B) * E;
    for (int64_t i = r * E; i < (r + 1) * E; ++i) {
      const float be = b * eps[i];
      const float F = (X[i] - be) / a;
      x0[i] = co * F + cs * X[i];
      if (rcfg) {
        const float scaled = b * S[i];
        const float Fd = (scaled - be) / a;
        float delta_x = co * Fd + cs * scaled;
        delta_x = an * delta_x;
        delta_x = delta_x / bn;
        S[i] = Nn[i - r * E] + delta_x;
      }
    }
  }
  std::memcpy(out_latent_.data(), x0 + (B - f_) * E, size_t(f_ * E) * sizeof(float));
  if (n_ > 1) {
    float* buf = buffer_.data_as<float>();
    for (int64_t r = 0; r < B - f_; ++r) {
      const float an = a_[size_t(r + f_)], bn = b_[size_t(r + f_)];
      for (int64_t i = r * E; i < (r + 1) * E; ++i) {
        const float sig = an * x0[i];
        buf[i] = s_.do_add_noise ? sig + bn * N[i + f_ * E] : sig;
      }
    }
  }
}

void Stream::denoise_sequential(const float* x_in) {
  const int64_t E = row_elems_, R = f_;
  float* x = pass_rows(R);  // the step's latent, where the UNet reads it
  std::memcpy(x, x_in, size_t(R * E) * sizeof(float));
  float* x0 = x0_.data_as<float>();
  std::vector<float>& t = step_t_;
  for (int64_t idx = 0; idx < n_; ++idx) {
    const SlotConstants& c = slots_[size_t(idx)];
    t.assign(size_t(R), float(c.timestep));
    const float* eps = guided_eps(R, t);
    for (int64_t i = 0; i < R * E; ++i) {
      const float F = (x[i] - c.beta_sqrt * eps[i]) / c.alpha_sqrt;
      x0[i] = c.c_out * F + c.c_skip * x[i];
    }
    if (idx + 1 < n_) {
      const SlotConstants& nx = slots_[size_t(idx + 1)];
      if (s_.do_add_noise) {
        float* noise = noise_tmp_.data_as<float>();
        draw_nhwc(gen_, draw_scratch_, noise, R, lh_, lw_, lc_);
        for (int64_t i = 0; i < R * E; ++i) x[i] = nx.alpha_sqrt * x0[i] + nx.beta_sqrt * noise[i];
      } else {
        for (int64_t i = 0; i < R * E; ++i) x[i] = nx.alpha_sqrt * x0[i];
      }
    }
  }
  std::memcpy(out_latent_.data(), x0, size_t(R * E) * sizeof(float));
}

void Stream::denoise(float* x_in) {
  if (s_.use_denoising_batch)
    denoise_batched(x_in);
  else
    denoise_sequential(x_in);
  eps_dev_ = Tensor{};
}

Tensor Stream::decode_output() {
  const int64_t E = row_elems_;
  float* z = x_.data_as<float>();
  const float* x0 = out_latent_.data_as<float>();
  const float sf = vae_.scaling_factor();
  for (int64_t i = 0; i < f_ * E; ++i) z[i] = x0[i] / sf;
  auto t0 = std::chrono::steady_clock::now();
  Tensor y = vae_.decode(to_device(Tensor::wrap(Shape{f_, lh_, lw_, lc_}, DType::F32, z)));
  const float* image = host_view(y, out_image_.data_as<float>());
  be_.synchronize();
  if (s_.time_stages) stage_done(timings_.decode_ms, t0);
  float* p = out_image_.data_as<float>();
  for (int64_t i = 0; i < out_image_.numel(); ++i) {
    const float v = image[i] / 2.f + 0.5f;
    p[i] = std::clamp(v, 0.f, 1.f);
  }
  y = Tensor{};
  has_output_ = true;
  return out_image_;
}

void Stream::stage_done(double& acc, std::chrono::steady_clock::time_point& t0) {
  be_.synchronize();
  const auto now = std::chrono::steady_clock::now();
  acc += std::chrono::duration<double, std::milli>(now - t0).count();
  t0 = now;
}

Tensor Stream::img2img(const std::vector<Image>& frames) {
  check_prepared("img2img");
  SD_CHECK(int64_t(frames.size()) == f_, "stream: img2img got ", frames.size(),
           " frames, frame_buffer_size is ", f_);
  float* dst = frame_in_.data_as<float>();
  for (const Image& im : frames) {
    SD_CHECK(im.width == s_.width && im.height == s_.height &&
                 im.rgb.size() == size_t(im.width) * im.height * 3,
             "stream: frame of ", im.width, "x", im.height, ", the stream is ", s_.width, "x",
             s_.height, " (resize frames first, e.g. with resize_cover)");
    for (uint8_t v : im.rgb) {
      const float u = float(v) / 255.f;
      *dst++ = 2.f * u - 1.f;
    }
  }
  return img2img_tensor(frame_in_);
}

void Stream::check_images(const Tensor& images) const {
  check_prepared("img2img");
  SD_CHECK(images.shape() == frame_in_.shape() && images.dtype() == DType::F32 &&
               images.device() == Device::CPU,
           "stream: img2img images ", images.shape().str(), " must be host f32 ",
           frame_in_.shape().str());
}

void Stream::encode_input(const Tensor& images) {
  const int64_t E = row_elems_;
  auto t0 = std::chrono::steady_clock::now();
  Tensor lat = vae_.encode(to_device(images));
  SD_CHECK(lat.shape() == (Shape{f_, lh_, lw_, lc_}), "stream: the VAE encoded ",
           images.shape().str(), " to ", lat.shape().str());
  const float* z = host_view(lat, x0_.data_as<float>());  // x0_: f rows, free until the step
  be_.synchronize();
  if (s_.time_stages) stage_done(timings_.encode_ms, t0);
  const float sf = vae_.scaling_factor();
  const float a = slots_[0].alpha_sqrt, b = slots_[0].beta_sqrt;
  const float* N = init_noise_.data_as<float>();
  xin_scratch_.resize(size_t(f_ * E));
  float* x = xin_scratch_.data();
  for (int64_t r = 0; r < f_; ++r)
    for (int64_t i = 0; i < E; ++i) {
      const float scaled = z[r * E + i] * sf;
      x[r * E + i] = a * scaled + b * N[i];
    }
}

void Stream::run_denoise() {
  unet_t0_ = std::chrono::steady_clock::now();
  denoise(xin_scratch_.data());
}

void Stream::warm_up(const Tensor& images) {
  check_images(images);
  if (!s_.use_denoising_batch || n_ < 2) return;
  encode_input(images);
  const std::vector<float> x_in = xin_scratch_;  // denoise may use the scratch
  for (int64_t i = 0; i + 1 < n_; ++i) {
    xin_scratch_.assign(x_in.begin(), x_in.end());
    run_denoise();
  }
}

Tensor Stream::img2img_tensor(const Tensor& images) {
  check_images(images);
  timings_ = StageTimings{};
  if (s_.similar_image_filter && ssf_.should_skip(images.data_as<float>(), images.numel()) &&
      has_output_) {
    ++skipped_;
    return out_image_;
  }
  encode_input(images);
  run_denoise();
  return decode_output();
}

Tensor Stream::txt2img() {
  check_prepared("txt2img");
  timings_ = StageTimings{};
  std::vector<float>& xin = xin_scratch_;
  xin.resize(size_t(f_ * row_elems_));
  draw_nhwc(gen_, draw_scratch_, xin.data(), f_, lh_, lw_, lc_);
  run_denoise();
  return decode_output();
}

}  // namespace sd

namespace sd {

Tensor Stream::txt2img_sd_turbo() {
  check_prepared("txt2img_sd_turbo");
  SD_CHECK(n_ == 1 && !guidance_, "stream: txt2img_sd_turbo needs one t_index (got ", n_,
           ") and no guidance (cfg_type none or guidance_scale <= 1)");
  timings_ = StageTimings{};
  unet_t0_ = std::chrono::steady_clock::now();
  const int64_t E = row_elems_;
  float* x = pass_rows(f_);  // no guidance: no extra rows
  draw_nhwc(gen_, draw_scratch_, x, f_, lh_, lw_, lc_);
  const float* eps = guided_eps(f_, t_rows_);
  float* out = out_latent_.data_as<float>();
  const float a = slots_[0].alpha_sqrt, b = slots_[0].beta_sqrt;
  for (int64_t i = 0; i < f_ * E; ++i) {
    const float be = b * eps[i];
    out[i] = (x[i] - be) / a;
  }
  eps_dev_ = Tensor{};
  return decode_output();
}

}  // namespace sd
