// The building blocks of the UNet (unet.h): ResnetBlock2D and Transformer2DModel with its
// BasicTransformerBlocks, as diffusers computes them, plus the weight reader they load from.
//
// ResnetBlock2D (resnet.py, time_embedding_norm "default"):
//   h = conv1(silu(group_norm1(x)))  + time_emb_proj(silu(temb))   (per row, per channel)
//   h = conv2(silu(group_norm2(h)))
//   y = (shortcut(x) + h) / output_scale_factor    shortcut = 1x1 conv when channels differ
// Fused: GroupNorm+SiLU; conv2 + residual add in one conv.
//
// Transformer2DModel (continuous input; GroupNorm eps 1e-6):
//   h = proj_in(group_norm(x))        [B, HW, inner]; proj_in/out are 1x1 convs (SD 1.x) or
//                                     linears (use_linear_projection, SD 2.x): the same matmul
//   per BasicTransformerBlock (LayerNorm eps 1e-5, attention without q/k/v biases):
//     h = to_out(attn(q(n1), k(n1), v(n1)))  + h,  n1 = norm1(h)      self-attention
//       (only_cross_attention: attn(q(n1), K1(ctx), V1(ctx)), a second cross-attention)
//     h = to_out(attn(q(n2), K(ctx), V(ctx))) + h, n2 = norm2(h)      cross-attention
//     h = ff2(geglu(ff1(norm3(h))))          + h                      GEGLU feed-forward
//   y = proj_out(h) + x
// Fused: every residual add happens in the matmul producing it.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/lora_targets.h"
#include "models/unet.h"

namespace sd {

class SafetensorsSet;

// A UNetWeightSource over one safetensors file or sharded weights (an index; SafetensorsSet)
// that remembers which tensors were read.
class SafetensorsUNetWeights : public UNetWeightSource {
 public:
  explicit SafetensorsUNetWeights(const std::string& path);
  ~SafetensorsUNetWeights() override;
  Tensor get(const std::string& name, const Shape& expect) override;
  void check_all_used() const override;
  std::string describe() const override;
  void release_resident() override;

 private:
  std::unique_ptr<SafetensorsSet> file_;
  std::set<std::string> used_;
};

// Reads parameters from a source and converts them for a backend; with `lora`, registers every
// conv and linear weight there (module name = parameter name without ".weight").
class UNetWeightReader {
 public:
  UNetWeightReader(UNetWeightSource& source, Backend& backend, LoraTargets* lora = nullptr)
      : source_(source), backend_(backend), lora_(lora) {}
  Tensor host(const std::string& name, const Shape& expect) { return source_.get(name, expect); }
  Weight conv(const std::string& name, int64_t out, int64_t in, int64_t k);
  Weight linear(const std::string& name, int64_t out, int64_t in);
  // A 1x1 conv [out, in, 1, 1] loaded as the linear [out, in] it is on NHWC data.
  Weight conv1x1_as_linear(const std::string& name, int64_t out, int64_t in);
  Weight vector(const std::string& name, int64_t n);

 private:
  Weight record(const std::string& name, Weight w, const Shape& torch_shape,
                const Shape& stored_shape);
  UNetWeightSource& source_;
  Backend& backend_;
  LoraTargets* lora_;
};

struct UNetNorm {
  Weight gamma, beta;
};

struct UNetConv {
  Weight weight, bias;
  Conv2dParams params;
};

struct UNetLinear {
  Weight weight, bias;  // bias undefined when the layer has none
};

// Parameter loaders shared by the blocks and the UNet: "<prefix>.weight" / "<prefix>.bias".
UNetNorm load_unet_norm(UNetWeightReader& r, const std::string& prefix, int64_t channels);
// k x k conv, stride 1, "same" padding (k - 1) / 2, with bias.
UNetConv load_unet_conv(UNetWeightReader& r, const std::string& prefix, int64_t out, int64_t in,
                        int k);
UNetLinear load_unet_linear(UNetWeightReader& r, const std::string& prefix, int64_t out, int64_t in,
                            bool bias);
// y = act(x · Wᵀ + bias + residual).
Tensor apply_linear(Backend& b, const Tensor& x, const UNetLinear& l, Act act = Act::None,
                    const Tensor* residual = nullptr);

struct ResnetBlock {
  int groups = 32;
  float eps = 1e-5f;
  float output_scale_factor = 1.f;
  UNetNorm norm1, norm2;
  UNetConv conv1, conv2;
  UNetLinear time_emb_proj;  // undefined without a time embedding (temb_channels 0: the VAE)
  bool has_shortcut = false;
  UNetConv conv_shortcut;  // 1x1, when in_channels != out_channels

  static ResnetBlock load(UNetWeightReader& r, const std::string& prefix, int64_t in_channels,
                          int64_t out_channels, int64_t temb_channels, int groups, float eps,
                          float output_scale_factor);
  // x [B, H, W, in]; temb_act = silu(temb) [B, temb_channels] (ignored, may be an empty
  // Tensor, when the block has no time embedding).
  Tensor forward(Backend& b, const Tensor& x, const Tensor& temb_act) const;
};

struct TransformerLayer {
  int heads = 8;
  int kv_index = 0;    // position of attn2's K/V in a UNetKVCache
  int kv1_index = -1;  // attn1's, when it attends to the text context (only_cross_attention)
  UNetNorm norm1, norm2, norm3;
  UNetLinear q1, k1, v1, out1;  // self-attention (k1/v1 take the text context when kv1_index >= 0)
  UNetLinear q2, k2, v2, out2;  // cross-attention; k2/v2 take the text context
  UNetLinear ff1, ff2;          // GEGLU projection (2 x 4C) and output (4C -> C)
};

// Where a transformer layer gets its cross-attention keys and values from: K/V entry `index` of
// a UNetKVCache, projected from the text context by `k` and `v`.
class CrossAttentionContext {
 public:
  virtual ~CrossAttentionContext() = default;
  virtual std::pair<Tensor, Tensor> kv(Backend& b, int index, const UNetLinear& k,
                                       const UNetLinear& v) = 0;
};

struct Transformer2D {
  int groups = 32;
  UNetNorm norm;
  UNetLinear proj_in, proj_out;
  std::vector<TransformerLayer> layers;

  // heads: number of attention heads (head dim = channels / heads); only_cross: attn1 attends
  // to the text context too; next_kv_index: the running count of K/V entries, advanced by
  // num_layers (twice that with only_cross).
  static Transformer2D load(UNetWeightReader& r, const std::string& prefix, int64_t channels,
                            int heads, int num_layers, int64_t cross_dim, int groups,
                            bool linear_projection, bool only_cross, int* next_kv_index);
  Tensor forward(Backend& b, const Tensor& x, CrossAttentionContext& ctx) const;
};

}  // namespace sd
