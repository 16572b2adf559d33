// AutoencoderKL: Stable Diffusion's full VAE (diffusers' AutoencoderKL with its Encoder and
// Decoder from vae.py), driven by the model's vae/config.json. Written only against sd::Backend;
// images and latents are NHWC.
//
// Structure (diffusers' autoencoder_kl.py, vae.py, unet_2d_blocks.py):
//   encoder = conv_in; per block i: layers_per_block ResnetBlock2D (C_{i-1} -> C_i), then (not
//             last) Downsample2D: zero-pad right and bottom by one, conv 3x3 stride 2 pad 0;
//             mid block; silu(group_norm(conv_norm_out)); conv_out -> 2 x latent channels;
//             quant_conv (1x1) -> moments = (mean, logvar) along channels
//   decoder = post_quant_conv (1x1); conv_in; mid block; per block (channels reversed):
//             layers_per_block + 1 ResnetBlock2D, then (not last) nearest 2x + conv 3x3;
//             silu(group_norm(conv_norm_out)); conv_out
//   mid     = resnet, attention, resnet (UNetMidBlock2D without time embedding; the attention is
//             optional: mid_block_add_attention)
//   attention = to_out(sdpa(to_q(n), to_k(n), to_v(n))) + x, n = group_norm(x): one head of the
//             full channel width over all H x W positions (scale 1 / sqrt(C)), q/k/v with biases
// ResNet blocks (no time embedding) come from unet_blocks.h; GroupNorm eps is 1e-6 everywhere.
//
// The asymmetric downsampling pad (0, 1, 0, 1) runs as an ordinary symmetric conv: the 3x3
// kernel is embedded at load in a 4x4 kernel whose first row and column are zero, used with
// stride 2 and pad 1. Output o then reads rows 2o .. 2o + 2 (row 2o - 1 meets the zero taps) and
// the bottom/right pad row the original conv sees is the symmetric pad, so the result is the
// same for even and odd sizes. The price: 16/9 of the downsampling convs' work (+4% of the SD
// encoder's FLOPs), no extra kernel. (A pad_right/bottom field in Conv2dParams, which oneDNN and
// cuDNN support natively, would remove that; not done to keep the backend interface unchanged.)
//
// Latent convention: encode() returns latents scaled for the UNet, (mean - shift_factor) *
// scaling_factor, and decode() takes latents in that same scale (it divides by scaling_factor
// and adds shift_factor first): the scale lives in the model, so pipelines never apply it.
// encode_moments() gives the unscaled distribution for tests and tools.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sd {

class UNetWeightSource;  // unet.h

struct AutoencoderKLConfig {
  int in_channels = 3;
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> block_out_channels{64};  // diffusers' defaults where config.json is silent
  int layers_per_block = 1;
  int norm_num_groups = 32;
  float scaling_factor = 0.18215f;
  float shift_factor = 0.f;  // config null -> 0
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  // The SD 1.x / 2.x (and sd-turbo) VAE: channels (128, 256, 512, 512), 2 layers per block.
  static AutoencoderKLConfig stable_diffusion();
  // Reads a diffusers vae/config.json; absent keys keep the defaults above. Unsupported options
  // (other block types or activations, latents_mean / latents_std) throw sd::Error naming the
  // file and the key.
  static AutoencoderKLConfig from_json_file(const std::string& path);
  void validate(const std::string& where) const;
  // Image pixels per latent pixel along each axis (8 for SD).
  int downscale() const { return 1 << (int(block_out_channels.size()) - 1); }
};

class AutoencoderKL {
 public:
  ~AutoencoderKL();
  AutoencoderKL(const AutoencoderKL&) = delete;
  AutoencoderKL& operator=(const AutoencoderKL&) = delete;

  // Loads a diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors or the
  // .fp16.safetensors variant), or a model folder with such a vae/ subfolder, converting the
  // weights for `backend`. Missing, misshaped or unexpected tensors throw sd::Error naming the
  // file, the tensor and the shapes.
  static std::unique_ptr<AutoencoderKL> load(const std::string& path, Backend& backend);
  // Builds the VAE `config` describes from `weights` (every tensor must be used).
  static std::unique_ptr<AutoencoderKL> create(const AutoencoderKLConfig& config,
                                               UNetWeightSource& weights, Backend& backend);

  const AutoencoderKLConfig& config() const { return config_; }
  const std::string& source() const { return source_; }

  // image [N, H, W, in_channels] in [-1, 1] (compute dtype, on the device; any H, W >= 2; SD
  // uses multiples of downscale()). Returns the scaled latent mean [N, h, w, latent_channels],
  // h = H / downscale() for multiples (diffusers' sizes otherwise).
  Tensor encode(const Tensor& image) const;
  // The scaled sample (mean + exp(0.5 clamp(logvar, -30, 20)) * noise, then scaled), as
  // diffusers' latent_dist.sample() with a generator that yields `noise`: a host f32 tensor
  // shaped like the latents. The exponential runs on the host, so this synchronizes.
  Tensor encode(const Tensor& image, const Tensor& noise) const;
  struct Moments {
    Tensor mean, logvar;  // unscaled; logvar not clamped
  };
  Moments encode_moments(const Tensor& image) const;
  // latents [N, h, w, latent_channels] scaled as encode() returns them -> image
  // [N, h * downscale(), w * downscale(), out_channels] in about [-1, 1] (not clamped).
  Tensor decode(const Tensor& latents) const;

  struct Parts;  // the converted parameters (autoencoder_kl.cpp)

 private:
  AutoencoderKL(Backend& backend, AutoencoderKLConfig config);
  Tensor encoder_features(const Tensor& image) const;  // up to conv_out (2 x latent channels)

  Backend& backend_;
  AutoencoderKLConfig config_;
  std::string source_;
  std::unique_ptr<Parts> parts_;
};

}  // namespace sd
