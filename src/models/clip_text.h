// The CLIP text encoder of Stable Diffusion, computed as transformers' CLIPTextModel computes it:
// SD 1.x uses OpenAI's ViT-L/14 text tower (12 layers, width 768, quick-GELU), SD 2.x and
// sd-turbo the OpenCLIP ViT-H/14 text tower (diffusers config: 23 layers, width 1024, GELU).
// Written only against sd::Backend.
//
//   x = token_embedding[ids] + position_embedding[0..L)            (gathered on the host)
//   each layer:  x = x + out_proj(attention(q, k, v, causal))  with q, k, v = proj(ln1(x))
//                x = x + fc2(act(fc1(ln2(x))))
//   output = final_layer_norm(x after the last layer used)
// clip_skip as diffusers' StableDiffusionPipeline.encode_prompt defines it: with clip_skip = k > 0
// the output is final_layer_norm(hidden_states[-(k + 1)]), i.e. the output of layer N - k; k = 0
// is last_hidden_state. So k layers are simply not run.
//
// quick_gelu(h) = h * sigmoid(1.702 h) costs nothing extra: fc1 is loaded scaled by 1.702 with
// SiLU fused into its matmul (silu(1.702 h) = 1.702 quick_gelu(h)), and fc2's weight is loaded
// scaled by 1 / 1.702.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "models/lora_targets.h"

namespace sd {

struct ClipTextConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // quick_gelu, gelu (erf), gelu_new / gelu_pytorch_tanh
  float layer_norm_eps = 1e-5f;

  static ClipTextConfig vit_l14();  // SD 1.x: openai/clip-vit-large-patch14
  static ClipTextConfig vit_h14();  // SD 2.x / sd-turbo: OpenCLIP ViT-H/14, 23 of 24 layers
  // Reads transformers' text_encoder/config.json; absent keys keep the ViT-L/14 defaults.
  // Throws sd::Error naming the file and the key at fault.
  static ClipTextConfig from_json_file(const std::string& path);
  void validate(const std::string& where) const;
  int head_dim() const { return hidden_size / num_attention_heads; }
  // Multiply-adds x 2 of one forward pass over `tokens` tokens (matmuls and attention).
  double flops(int tokens) const;
};

// Supplies a parameter by its transformers name (e.g. "text_model.encoder.layers.0.mlp.fc1.weight")
// as a host tensor of any float dtype with exactly `shape`; throws sd::Error if it cannot.
using ClipTextParamSource = std::function<Tensor(const std::string& name, const Shape& shape)>;

class ClipTextModel {
 public:
  // Loads a text encoder from:
  //  - a diffusers model folder (containing text_encoder/) or a text_encoder/ folder:
  //    config.json + model.safetensors (or model.fp16.safetensors);
  //  - a single-file SD 1.x checkpoint (.safetensors): cond_stage_model.transformer.* with
  //    transformers names (with or without "text_model.");
  //  - a single-file SD 2.x checkpoint: cond_stage_model.model.* with OpenCLIP names
  //    (transformer.resblocks.N.attn.in_proj_weight fused q/k/v, ...); of its R resblocks the
  //    first R - 1 are used, followed by ln_final, as diffusers' converted 23-layer config does;
  //  - a bare transformers-named text encoder file (text_model.*).
  // Single files carry no config: it is inferred from the tensor shapes (heads = width / 64,
  // quick_gelu for OpenAI CLIP names, gelu for OpenCLIP) unless `config` is given.
  // Missing or misshaped tensors throw sd::Error naming the file, the tensor and both shapes.
  static std::unique_ptr<ClipTextModel> load(const std::string& path, Backend& backend,
                                             const ClipTextConfig* config = nullptr);
  // Builds the model from any parameter source; `source` names it in messages.
  static std::unique_ptr<ClipTextModel> from_params(const ClipTextConfig& config,
                                                    const ClipTextParamSource& params,
                                                    Backend& backend, std::string source);
  // Deterministic random weights (for tests and benchmarks of full-size architectures without
  // weight files): parameter N is hash_uniform(N, scale, offset) (core/hash_random.h) with
  //   norm weights (name contains "norm", ends ".weight"): scale 0.1, offset 1
  //   biases (".bias"):                                    scale 0.02
  //   embeddings (name contains "embedding"):              scale 0.05
  //   other matrices [out, in]:                            scale float(1 / sqrt(in))
  // tools/make_text_encoder_fixtures.py builds the same weights for the reference outputs.
  static std::unique_ptr<ClipTextModel> hash_random(const ClipTextConfig& config, Backend& backend);
  // The host f32 tensor hash_random() uses for parameter `name` of `shape`.
  static Tensor hash_param(const std::string& name, const Shape& shape);

  const ClipTextConfig& config() const { return config_; }
  const std::string& source() const { return source_; }
  // True when the weights came with OpenCLIP names (an SD 2.x single file).
  bool openclip_names() const { return openclip_names_; }
  Backend& backend() const { return backend_; }
  // The q/k/v/out_proj and fc1/fc2 weights by transformers module name, for LoRA (lora.h).
  LoraTargets& lora_targets() { return lora_; }

  // ids: batch rows of L token ids each (1 <= L <= max_position_embeddings, ids < vocab_size).
  // Returns [batch, L, hidden_size] in the backend's compute dtype on its device.
  // 0 <= clip_skip <= num_hidden_layers. Not thread-safe (it runs on the backend's arena and
  // stream); PromptEncoder serialises its calls.
  Tensor forward(const std::vector<int>& ids, int batch, int clip_skip = 0) const;
  // forward() downloaded: host f32 [batch, L, hidden_size].
  Tensor forward_to_host(const std::vector<int>& ids, int batch, int clip_skip = 0) const;

  struct Layer {
    Weight ln1_gamma, ln1_beta, q, q_bias, k, k_bias, v, v_bias, out, out_bias;
    Weight ln2_gamma, ln2_beta, fc1, fc1_bias, fc2, fc2_bias;
  };

 private:
  ClipTextModel(Backend& backend, ClipTextConfig config)
      : backend_(backend), config_(std::move(config)) {}
  Tensor embed(const std::vector<int>& ids, int batch, int length) const;

  Backend& backend_;
  ClipTextConfig config_;
  std::string source_;
  bool openclip_names_ = false;
  Act mlp_act_ = Act::None;
  Tensor token_embedding_;     // host [vocab, width], its file's float dtype
  Tensor position_embedding_;  // host f32 [max_positions, width]
  std::vector<Layer> layers_;
  Weight final_gamma_, final_beta_;
  LoraTargets lora_;
};

}  // namespace sd
