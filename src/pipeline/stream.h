// Stream: the StreamDiffusion pipeline (arXiv 2312.12491) as the original `streamdiffusion`
// package (0.1.1, pipeline.py) computes it: Stream Batch denoising, residual classifier-free
// guidance (RCFG), the stochastic similarity filter, img2img and txt2img.
//
// Notation: n = len(t_index_list) slots, f = frame_buffer_size, B = n·f rows; row r belongs to
// slot r / f; a, b, c_skip, c_out are the slot's LCM constants (scheduler.h), per row. All
// latents are NHWC. Per img2img call (f frames):
//   z = E(x)·sf; x_in = a₀z + b₀·N[0]          (N: init_noise [B], row 0 for every frame)
//   batched: X = [x_in; buffer], S = [N[0] ×f; S[:−f]] (n > 1); one UNet pass over
//     none      X                    ε = ε_c
//     full      [X; X]               ε = ε_u + g(ε_c − ε_u)        (uncond rows first)
//     self      X                    ε_u = δS, ε as full
//     initialize[X[0:f]; X]          S[0:f] ← the extra rows' output, ε_u = δS, ε as full
//   x̂₀ = c_out·(X − bε)/a + c_skip·X
//   self / initialize (RCFG update): Δ = c_out·(bS − bε)/a + c_skip·bS, Δ ·= a_next / b_next
//     (next slot's constants; 1 for the last), S = roll(N, −f rows) + Δ
//   output x̂₀ of the last slot; buffer = a_next·x̂₀[:−f] + b_next·N[f:] (do_add_noise) or
//   a_next·x̂₀[:−f]. Output lags input by n − 1 calls.
//   sequential (denoising batch off): the n steps run one after another on the f rows; between
//   steps x = a_{i+1}·x̂₀ + b_{i+1}·(fresh noise from the generator) (do_add_noise).
//   Guidance as above per step (self: S stays 0 in this mode, as in the original, so
//   ε = g·ε_c; initialize: S[0:f] is the step's uncond output).
// txt2img: a latent drawn from the generator (f rows) enters as x_in directly.
// txt2img_sd_turbo (one step, e.g. sd-turbo at t = 999): x̂₀ = (x − bε)/a on such a latent.
// Decode: D(x̂₀ / sf), then (y / 2 + 0.5) clamped to [0, 1].
// g ≤ 1 (and cfg_type none, which forces g = 1) skips guidance; the RCFG update still runs for
// self / initialize in batched mode, as in the original.
//
// Randomness: init_noise is torch.randn((B, 4, h, w), generator=manual_seed(seed)) drawn with
// TorchGenerator (torch_random.h), so a seed gives the original's noise; the same generator
// then supplies the sequential mode's re-noising and txt2img's latents. Seeds from 2^32 on,
// which torch would fold onto their low 32 bits, get noise of their own (seed_wide).
//
// Defects of the original fixed here on purpose (tools/make_stream_fixtures.py patches the
// reference the same way and checks the unpatched original gives identical frames where the
// fixes cannot matter):
//  1. update_prompt rebuilt only the cond rows (cfg full / initialize lost their uncond rows and
//     the batch no longer matched); here it rebuilds all rows (and the K/V cache).
//  2. initialize with f > 1 concatenated one extra row but f uncond embeddings (a shape error);
//     here the uncond pass covers the f rows of slot 0.
//  3. the slot shifts (stock noise, latent buffer, next-slot constants, noise roll) moved one
//     row instead of one slot (f rows), and c_skip / c_out were per slot while a / b were per
//     row: f > 1 with n > 1 failed. Here every shift is f rows and all constants are per row.
//  4. sequential mode overwrote init_noise with the input latent (so the next frame was noised
//     with the previous noisy latent) and drew re-noising noise and txt2img latents from torch's
//     global generator; here init_noise is kept and all noise comes from the stream's generator.
//  5. full in sequential mode had no uncond embeddings (a NameError); here it uses uncond ×f.
//  6. full / initialize with g ≤ 1 failed (no negative embeddings); here they behave as none.
//
// Memory: every buffer is sized at prepare(); one planning pass then reserves the backend's
// arena, so img2img / txt2img allocate no memory (the arena's overflow count stays 0). The
// returned image is the stream's output buffer: valid until the next frame call (copy it to
// keep it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/image.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/scheduler.h"
#include "pipeline/similarity_filter.h"
#include "pipeline/torch_random.h"

namespace sd {

// The image <-> latent model (TAESD or AutoencoderKL). Images NHWC in [-1, 1], latents NHWC
// unscaled, both compute dtype on the backend's device.
class LatentCodec {
 public:
  virtual ~LatentCodec() = default;
  virtual Tensor encode(const Tensor& image) const = 0;
  virtual Tensor decode(const Tensor& latents) const = 0;
  virtual float scaling_factor() const = 0;
  virtual int latent_channels() const = 0;
  virtual int downscale() const = 0;  // image pixels per latent pixel (8)
};

class TaesdCodec : public LatentCodec {
 public:
  explicit TaesdCodec(const Taesd& taesd) : taesd_(taesd) {}
  Tensor encode(const Tensor& image) const override { return taesd_.encode(image); }
  Tensor decode(const Tensor& latents) const override { return taesd_.decode(latents); }
  float scaling_factor() const override { return taesd_.config().scaling_factor; }
  int latent_channels() const override { return taesd_.config().latent_channels; }
  int downscale() const override { return taesd_.config().encoder_downscale(); }

 private:
  const Taesd& taesd_;
};

enum class CfgType { None, Full, Self, Initialize };
CfgType parse_cfg_type(const std::string& name);  // throws sd::Error on an unknown name
const char* cfg_type_name(CfgType t);

struct StreamSettings {
  int width = 512;
  int height = 512;
  std::vector<int> t_index_list{32, 45};
  int num_inference_steps = 50;
  int frame_buffer_size = 1;
  bool use_denoising_batch = true;
  CfgType cfg_type = CfgType::Self;
  float guidance_scale = 1.2f;
  float delta = 1.0f;
  bool do_add_noise = true;
  uint64_t seed = 2;
  bool similar_image_filter = false;
  float similar_image_filter_threshold = 0.98f;
  int similar_image_filter_max_skip_frame = 10;
  // Project the prompts' cross-attention K/V once per prompt (the K/V cache). false: every UNet
  // pass takes the prompt embeddings and projects K/V itself (the same frames; for ablations).
  bool precompute_kv = true;
  // Synchronize the backend after encode, the UNet passes and decode, and record their times
  // (last_timings()); off, a frame has no synchronization but the ones it needs.
  bool time_stages = false;
};

// Wall times of the last frame's stages (StreamSettings::time_stages), milliseconds.
struct StageTimings {
  double encode_ms = 0, unet_ms = 0, decode_ms = 0;
};

class Stream {
 public:
  // The models must outlive the stream; `text` may be null when only prepare_embeddings() is
  // used. Settings are checked against the models here (sd::Error names the setting).
  Stream(Backend& backend, const UNet& unet, const LatentCodec& vae, PromptEncoder* text,
         StreamSettings settings, LcmSchedulerConfig scheduler = {});
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  const StreamSettings& settings() const { return s_; }
  bool prepared() const { return prepared_; }

  // Encodes the prompts, draws the noise, sizes every buffer and plans the arena.
  void prepare(const std::string& prompt, const std::string& negative_prompt = "");
  // The same with the embeddings given ([tokens, D] host f32 each).
  void prepare_embeddings(const Tensor& cond, const Tensor& uncond);

  // f frames (settings width x height, RGB) -> f images [f, H, W, 3] host f32 in [0, 1]. With
  // the similarity filter on, a skipped call returns the previous output again.
  Tensor img2img(const std::vector<Image>& frames);
  Tensor img2img(const Image& frame) { return img2img(std::vector<Image>{frame}); }
  // The same from preprocessed images [f, H, W, 3] host f32 in [-1, 1] (e.g. input_buffer()).
  Tensor img2img_tensor(const Tensor& images);
  // Fills the pipeline with `images` before their real img2img call: len(t_index_list) − 1
  // passes in batched mode (none in sequential mode), bypassing the similarity filter, so the
  // filter compares the next frame with the last real one and every input gets an output.
  void warm_up(const Tensor& images);
  // A host buffer [f, H, W, 3] f32 sized at construction, for callers that convert frames into
  // it and pass it to img2img_tensor (no allocation per frame).
  const Tensor& input_buffer() const { return frame_in_; }
  Tensor txt2img();
  // The original's txt2img_sd_turbo: one UNet pass on a fresh latent at the single slot's
  // timestep, x̂₀ = (x − bε)/a (no c_skip / c_out), no guidance. Needs len(t_index_list) == 1
  // and no guidance (cfg_type none, or g <= 1).
  Tensor txt2img_sd_turbo();

  // New prompt (keeps the negative prompt); recomputes embeddings and the K/V cache only.
  void update_prompt(const std::string& prompt);
  void update_embeddings(const Tensor& cond);
  void update_embeddings(const Tensor& cond, const Tensor& uncond);
  // New guidance scale and RCFG delta. Where guidance turns on or off for cfg full /
  // initialize (g crossing 1), the UNet's rows change: the K/V cache and the plan are rebuilt.
  void set_guidance(float guidance_scale, float delta);
  void set_similarity_filter(bool enabled, float threshold, int max_skip_frame);
  // Forgets the frames in flight: zero latent buffer and stock noise, the filter's reference
  // and the previous output (the noise and settings are kept), as right after prepare().
  void reset_state();
  // Same length as before; recomputes the per-row constants (no re-preparation).
  void update_t_index_list(const std::vector<int>& t_index_list);
  // Re-seeds the generator and redraws init_noise (the stream state is kept).
  void set_seed(uint64_t seed);
  // Replaces init_noise ([B, h, w, 4] host f32, NHWC), e.g. with a reference's noise.
  void set_init_noise(const Tensor& noise);
  // The init_noise that seed `seed` gives this stream (as set_seed would draw it), into `out`
  // ([B, h, w, 4] host f32); for blending the noises of several seeds.
  void noise_for_seed(uint64_t seed, Tensor& out) const;

  const Tensor& init_noise() const { return init_noise_; }
  const Tensor& last_latent() const { return out_latent_; }  // x̂₀ of the output rows
  const std::vector<SlotConstants>& slot_constants() const { return slots_; }
  int64_t skipped_frames() const { return skipped_; }
  int64_t latent_height() const { return lh_; }
  int64_t latent_width() const { return lw_; }
  int64_t rows() const { return rows_; }  // B (batched) or f (sequential)
  const StageTimings& last_timings() const { return timings_; }

 private:
  void build_row_constants();  // and the time embeddings of the new timesteps
  // The timesteps of a pass over `rows` latent rows with timesteps `t_rows`: the extra rows'
  // first (extra_rows), in t_scratch_.
  const std::vector<float>& pass_timesteps(int64_t rows, const std::vector<float>& t_rows);
  // Computes the time embedding of every pass layout this stream runs (once per prepare or
  // timestep change, so no frame computes one).
  void cache_time_embeddings();
  void build_kv();
  void check_prepared(const char* what) const;
  void denoise(float* x_in);  // x_in: f rows; result in out_latent_
  void denoise_batched(const float* x_in);
  void denoise_sequential(const float* x_in);
  // One UNet pass with guidance over the `rows` latent rows at pass_rows(rows) (timesteps per
  // row), the unconditional rows it needs copied in front of them. Returns ε of the rows (valid
  // until the next pass; in the UNet's own output where host_direct_, else in eps_).
  const float* guided_eps(int64_t rows, const std::vector<float>& t_rows);
  // Rows a pass puts in front of `rows` latent rows for guidance: all of them (full), the first
  // f (initialize) or none.
  int64_t extra_rows(int64_t rows) const;
  // Where a pass's latent rows go in x_ (after the extra rows): the host math writes them there,
  // and where host_direct_ the UNet reads them there too.
  float* pass_rows(int64_t rows);
  // `host` (f32) as a device tensor: itself where host_direct_, else an arena copy.
  Tensor to_device(const Tensor& host) const;
  // The f32 values of `dev` for the host, readable after synchronize(): its own memory where
  // host_direct_, else `staging` after a transfer.
  float* host_view(const Tensor& dev, float* staging) const;
  void check_images(const Tensor& images) const;
  // VAE-encodes `images`, scales and noises them for slot 0: the f input rows in xin_scratch_.
  void encode_input(const Tensor& images);
  void run_denoise();  // denoise(xin_scratch_), timing the UNet passes
  Tensor decode_output();
  void plan_arena();
  // Adds the wall time since `t0` to `acc` after synchronizing (StreamSettings::time_stages).
  void stage_done(double& acc, std::chrono::steady_clock::time_point& t0);
  // One UNet pass over x [kv_.batch rows] with the K/V cache, or (precompute_kv off) with the
  // prompt embeddings of those rows.
  Tensor unet_pass(const Tensor& x, const std::vector<float>& t) const;
  // The UNet time embedding of a row layout `t`, computed once per layout (a stream has one per
  // pass kind: the batched pass, or each sequential step) and kept until the timesteps change.
  Tensor time_embedding_for(const std::vector<float>& t) const;

  Backend& be_;
  const UNet& unet_;
  const LatentCodec& vae_;
  PromptEncoder* text_;
  StreamSettings s_;
  LcmScheduler scheduler_;
  TorchGenerator gen_;
  SimilarityFilter ssf_;

  bool prepared_ = false;
  bool guidance_ = false;  // g > 1 and cfg_type != none
  int64_t f_ = 1, n_ = 1, rows_ = 1, lh_ = 0, lw_ = 0, lc_ = 4, row_elems_ = 0;
  std::vector<SlotConstants> slots_;
  // Per-row constants of the batched layout (B rows) and their next-slot counterparts.
  std::vector<float> a_, b_, cskip_, cout_, a_next_, b_next_, t_rows_;
  Tensor cond_, uncond_;  // [tokens, D] host f32
  UNetKVCache kv_;        // batched: UNet rows; sequential: f (+ extra) rows
  mutable std::vector<std::pair<std::vector<float>, Tensor>> temb_cache_;
  Tensor pass_states_;  // precompute_kv off: [kv_.batch, tokens, D] host f32 (kv_ is empty
                        // but for batch / tokens)
  // The latents between the models stay on the host in f32; where the backend computes in f32
  // in host memory (host_direct_) the models read and write them in place, with no copies.
  bool host_direct_ = false;
  Tensor init_noise_, stock_, buffer_, x_, eps_, x0_, out_latent_, frame_in_, noise_tmp_;
  Tensor eps_dev_;    // the UNet output of the running pass, released before anything else runs
  Tensor out_image_;  // [f, H, W, 3] host f32: what img2img / txt2img return
  bool has_output_ = false;
  std::vector<float> t_scratch_, step_t_, draw_scratch_, xin_scratch_;  // sized at prepare
  StageTimings timings_;
  std::chrono::steady_clock::time_point unet_t0_;
  int64_t skipped_ = 0;
};

}  // namespace sd
