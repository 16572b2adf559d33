// UNet2DConditionModel: the denoising UNet of Stable Diffusion 1.x / 2.x (and sd-turbo), computed
// as diffusers computes it, driven by the model's unet/config.json. Written only against
// sd::Backend; activations are NHWC.
//
// Structure (diffusers' unet_2d_condition.py and unet_2d_blocks.py):
//   temb  = linear_2(silu(linear_1(sinusoidal(t))))          per batch row (own timestep)
//   x     = conv_in(sample); skips = [x]
//   down  : per block, per layer: x = resnet(x, temb) [then transformer(x, context)],
//           skips += x; then (not last block) x = conv3x3 stride 2 (x), skips += x
//   mid   : resnet, transformer, resnet (UNetMidBlock2DCrossAttn; may be absent: null)
//   up    : per block, per layer: x = resnet(concat(x, skips.pop()), temb) [transformer];
//           then (not last block) x = conv3x3(nearest2x(x))
//   out   = conv_out(silu(group_norm(x)))
// See unet_blocks.h for the ResNet and Transformer2D blocks.
//
// Attention heads: diffusers' config key `attention_head_dim` is, for these models, the NUMBER of
// heads (diffusers issue 2011: num_attention_heads defaults to attention_head_dim, and setting
// num_attention_heads itself is rejected by diffusers). SD 1.x: 8 heads everywhere (head dim
// 40/80/160); SD 2.x: [5, 10, 20, 20] heads, i.e. head dim 64. A block's head dim is
// channels / heads.
//
// Cross-attention K/V: the K and V projections of the text context depend only on the prompt.
// precompute_kv() computes them once per distinct prompt row and lays them out per batch row;
// the forward overload taking the cache skips those matmuls and gives the same result.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/lora_targets.h"

namespace sd {

class CrossAttentionContext;  // unet_blocks.h

struct UNetConfig {
  int in_channels = 4;
  int out_channels = 4;
  bool flip_sin_to_cos = true;
  float freq_shift = 0.f;
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "CrossAttnDownBlock2D", "DownBlock2D"};
  bool has_mid_block = true;  // mid_block_type "UNetMidBlock2DCrossAttn" (true) or null
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                          "CrossAttnUpBlock2D"};
  std::vector<int> block_out_channels{320, 640, 1280, 1280};
  // Per down block (the up path uses them reversed), expanded from an int where the config has
  // one.
  std::vector<int> layers_per_block{2, 2, 2, 2};
  std::vector<int> transformer_layers_per_block{1, 1, 1, 1};
  std::vector<int> num_heads{8, 8, 8, 8};  // from the legacy key attention_head_dim
  // Per down block (reversed for the up path; empty = all false): the transformer's first
  // attention (attn1) attends to the text context instead of the image tokens (SDXS-512-0.9's
  // highest-resolution stage). The mid block ignores it, as diffusers does.
  std::vector<bool> only_cross_attention;
  int cross_attention_dim = 1280;
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool use_linear_projection = false;
  float mid_block_scale_factor = 1.f;
  int conv_in_kernel = 3;
  int conv_out_kernel = 3;
  int time_embedding_dim = 0;  // 0: 4 * block_out_channels[0]

  // Reads a diffusers unet/config.json; absent keys keep diffusers' defaults (above). Options
  // this implementation does not support (other block types, class or addition embeddings,
  // scale_shift time norm, ...) throw sd::Error naming the file and the key.
  static UNetConfig from_json_file(const std::string& path);
  void validate(const std::string& where) const;

  bool only_cross(size_t down_block) const {
    return down_block < only_cross_attention.size() && only_cross_attention[down_block];
  }
  int temb_dim() const {
    return time_embedding_dim > 0 ? time_embedding_dim : 4 * block_out_channels[0];
  }
  // Latent height and width must be multiples of this (2 ^ number of downsamplers).
  int size_multiple() const { return 1 << (int(block_out_channels.size()) - 1); }
};

// The configs of the reference UNets (a downloaded model reads its own config.json):
// - sd15, sd21: SD 1.5 and SD 2.1 / sd-turbo, assumed for single-file checkpoints
//   (models/ldm_checkpoint.h);
// - bk-sdm-base, bk-sdm-small, bk-sdm-tiny: BK-SDM's (block-removed, knowledge-distilled
//   Stable Diffusion; Kim et al. 2023), SD 1.x with one resnet (and transformer) per down stage
//   and two per up stage (layers_per_block 1): "base" (segmind/small-sd's layout, 580 M
//   parameters); "small" also without the mid block (482 M); "tiny" also without the innermost
//   stage (three blocks, 323 M; segmind/tiny-sd's layout).
// - sdxs-512: SDXS-512-0.9's UNet as stable-diffusion.cpp reads it (its config.json was not at
//   hand): SD 2.x family, tiny (three blocks, layers_per_block 1, no mid block), the first stage
//   with one 320-wide head whose attn1 attends to the text (only_cross_attention).
// Used for random-weight benchmarks of small models.
UNetConfig sd15_unet_config();
UNetConfig sd21_unet_config();
UNetConfig bk_sdm_base_unet_config();
UNetConfig bk_sdm_small_unet_config();
UNetConfig bk_sdm_tiny_unet_config();
UNetConfig sdxs_512_unet_config();
// The names reference_unet_config takes, and one of the above by name (throws sd::Error listing
// the names for any other).
const std::vector<std::string>& reference_unet_archs();
UNetConfig reference_unet_config(const std::string& arch);

// The cross-attention keys and values of every transformer layer for one batch layout: k[i] and
// v[i] are [batch, tokens, inner_dim] (compute dtype, persistent device memory, not the arena),
// in execution order (down blocks, mid block, up blocks): one entry per layer, two for a layer
// whose attn1 is a cross-attention too (only_cross_attention), attn1's first.
struct UNetKVCache {
  std::vector<Tensor> k, v;
  int64_t batch = 0;
  int64_t tokens = 0;
  int64_t distinct_prompts = 0;  // how many rows the projections were computed for
};

// Where UNet parameters come from: f32 host tensors by diffusers name (a safetensors file, or a
// generator of deterministic random weights for benchmarks and full-size tests).
class UNetWeightSource {
 public:
  virtual ~UNetWeightSource() = default;
  // Tensor `name` with shape `expect`; throws sd::Error naming the source, the tensor and both
  // shapes when it is absent or shaped otherwise.
  virtual Tensor get(const std::string& name, const Shape& expect) = 0;
  // Throws naming a tensor the source holds but nobody asked for (nothing to check by default).
  virtual void check_all_used() const {}
  virtual std::string describe() const = 0;  // for messages, e.g. the file path
  // Called once the model is built and the source is kept only for rare re-reads (LoRA):
  // memory-mapped sources drop their resident pages.
  virtual void release_resident() {}
};

class UNet {
 public:
  ~UNet();
  UNet(const UNet&) = delete;
  UNet& operator=(const UNet&) = delete;

  // Loads a diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors or the
  // .fp16.safetensors variant), or a model folder with such a unet/ subfolder, converting the
  // weights for `backend`. Missing, misshaped or unexpected tensors throw sd::Error naming the
  // file, the tensor and the shapes.
  static std::unique_ptr<UNet> load(const std::string& path, Backend& backend);
  // Builds the UNet `config` describes from `weights` (every tensor must be used). The shared
  // overload keeps the source as the original weights LoRA fusing starts from (lora.h); a
  // UNet made from a borrowed source cannot fuse LoRA.
  static std::unique_ptr<UNet> create(const UNetConfig& config,
                                      std::shared_ptr<UNetWeightSource> weights, Backend& backend);
  static std::unique_ptr<UNet> create(const UNetConfig& config, UNetWeightSource& weights,
                                      Backend& backend);

  const UNetConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  Backend& backend() const { return backend_; }
  int num_transformer_layers() const;  // BasicTransformerBlocks
  // Entries of a UNetKVCache: one per transformer layer, plus one per only-cross-attention layer.
  int num_kv_entries() const;
  // The conv and linear weights by diffusers module name, for LoRA (lora.h).
  LoraTargets& lora_targets() { return lora_; }

  // sample [B, h, w, in_channels] (compute dtype, on the device; h and w multiples of
  // config().size_multiple()); timesteps: B values (one per row) or one for all rows;
  // encoder_hidden_states [B, tokens, cross_attention_dim]. Returns [B, h, w, out_channels].
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps,
                 const Tensor& encoder_hidden_states) const;
  // The same with the cross-attention K/V taken from `kv` (kv.batch must equal B).
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps,
                 const UNetKVCache& kv) const;
  // The per-frame path: time embedding (from time_embedding()) and K/V both precomputed; uploads
  // nothing and never synchronizes. (The overloads taking timesteps upload the sinusoidal
  // embedding and synchronize once, before the UNet's kernels.)
  Tensor forward(const Tensor& sample, const Tensor& time_embedding, const UNetKVCache& kv) const;

  // K/V for a batch whose row b uses prompt row_prompt[b] of `prompts` [P, tokens, D]; the
  // projections run once per prompt (P rows), then are copied to the batch layout.
  UNetKVCache precompute_kv(const Tensor& prompts, const std::vector<int>& row_prompt) const;
  // K/V for encoder_hidden_states [B, tokens, D] as forward() would take them; identical rows
  // are detected (bitwise) and projected once.
  UNetKVCache precompute_kv(const Tensor& encoder_hidden_states) const;

  // The time embedding linear_2(silu(linear_1(sinusoidal(t)))) for `batch` rows (timesteps: one
  // per row or one for all), [B, temb_dim], in persistent device memory (not the arena), to be
  // computed once per set of timesteps (StreamDiffusion's are fixed per stream). Synchronizes.
  Tensor time_embedding(const std::vector<float>& timesteps, int64_t batch) const;

  struct Blocks;  // the converted parameters (unet.cpp)

 private:
  UNet(Backend& backend, UNetConfig config);
  Tensor time_embedding_arena(const std::vector<float>& timesteps, int64_t batch) const;
  Tensor run(const Tensor& sample, const Tensor& temb, CrossAttentionContext& ctx) const;

  Backend& backend_;
  UNetConfig config_;
  std::string source_;
  std::unique_ptr<Blocks> blocks_;
  LoraTargets lora_;
};

// diffusers' get_timestep_embedding (float32 arithmetic as torch does it): [B, dim] host f32,
// for dim = block_out_channels[0]. Exposed for tests.
Tensor sinusoidal_timestep_embedding(const std::vector<float>& timesteps, int dim,
                                     bool flip_sin_to_cos, float freq_shift);

}  // namespace sd
