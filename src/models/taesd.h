// TAESD, the Tiny AutoEncoder for Stable Diffusion (madebyollin/taesd; diffusers'
// AutoencoderTiny): a small convolutional encoder and decoder that share SD's 4-channel latent
// space. Written only against sd::Backend.
//
// Architecture (as diffusers' EncoderTiny / DecoderTiny / AutoencoderTinyBlock):
//   block(x)  = relu(conv3(relu(conv2(relu(conv1(x))))) + x)          3x3 convs, bias
//   encoder   = x -> (x + 1) / 2; for each stage i: conv (stage 0: in -> C, bias; later stages:
//               stride 2, no bias), num_encoder_blocks[i] blocks; then conv C -> latent (bias).
//   decoder   = z -> tanh(z / 3) * 3; conv latent -> C (bias), relu; for each stage i:
//               num_decoder_blocks[i] blocks, then (not last) nearest 2x upsample and conv C -> C
//               without bias, (last) conv C -> out with bias; finally y -> 2y - 1.
// Conventions: images are NHWC in [-1, 1]; latents are NHWC and unscaled (TAESD's scaling
// factor is 1.0). latent_magnitude / latent_shift (read from the config) only describe diffusers'
// optional packing of latents into [0, 1] for 8-bit storage; encode and decode do not apply it.
//
// Fusion: ReLU and the residual add run inside the conv (Backend::conv2d act / residual); the
// decoder's clamp factor 3 and its final 2y - 1 are folded into the first and last convs at load.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sd {

struct TaesdConfig {
  int in_channels = 3;
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> encoder_block_out_channels{64, 64, 64, 64};
  std::vector<int> decoder_block_out_channels{64, 64, 64, 64};
  std::vector<int> num_encoder_blocks{1, 3, 3, 3};
  std::vector<int> num_decoder_blocks{3, 3, 3, 1};
  int upsampling_scaling_factor = 2;
  float latent_magnitude = 3.f;
  float latent_shift = 0.5f;
  float scaling_factor = 1.f;

  // Reads a diffusers config.json; absent keys keep the defaults above (the madebyollin/taesd
  // config). Throws sd::Error naming the file and the key on unsupported values.
  static TaesdConfig from_json_file(const std::string& path);
  // Checks the values are ones this implementation (and diffusers) can build; `where` prefixes
  // the message.
  void validate(const std::string& where) const;
  // Image pixels per latent pixel along each axis (8 for TAESD).
  int encoder_downscale() const { return 1 << (int(num_encoder_blocks.size()) - 1); }
  int decoder_upscale() const { return 1 << (int(num_decoder_blocks.size()) - 1); }
};

class Taesd {
 public:
  // Loads a TAESD from `path`, converting the weights for `backend`:
  //  - a diffusers folder: config.json + diffusion_pytorch_model.safetensors (or the
  //    .fp16.safetensors variant);
  //  - a folder with madebyollin's original taesd_encoder.safetensors and/or
  //    taesd_decoder.safetensors (default config);
  //  - a single .safetensors file in the diffusers layout ("encoder.layers.N...",
  //    "decoder.layers.N...", both halves required), default config;
  //  - one original file (encoder or decoder, recognised by its keys: "0.weight" is the
  //    encoder's first conv, "1.weight" the decoder's), default config; only that half loads.
  // Missing or misshaped tensors throw sd::Error naming the file, the tensor and the shapes.
  static std::unique_ptr<Taesd> load(const std::string& path, Backend& backend);

  const TaesdConfig& config() const { return config_; }
  const std::string& source() const { return source_; }  // what was loaded, for messages
  bool has_encoder() const { return !encoder_.empty(); }
  bool has_decoder() const { return !decoder_.empty(); }

  // image [N, H, W, in_channels] in [-1, 1], compute dtype, on the backend's device; H and W
  // multiples of encoder_downscale(). Returns latents [N, H/8, W/8, latent_channels].
  Tensor encode(const Tensor& image) const;
  // latents [N, h, w, latent_channels] -> image [N, 8h, 8w, out_channels] in [-1, 1]
  // (not clamped: values slightly outside the range are possible).
  Tensor decode(const Tensor& latents) const;

  // One convolution with its converted parameters; public for the loader in taesd.cpp.
  struct Conv {
    Weight weight;
    Weight bias;  // undefined when the layer has no bias
    Conv2dParams params;
  };
  // Residual block: relu(c3(relu(c2(relu(c1(x))))) + x).
  struct Block {
    Conv c1, c2, c3;
  };
  // One encoder or decoder step, in order.
  struct Layer {
    enum Kind { kConv, kConvRelu, kBlock, kUpsample } kind;
    Conv conv;    // kConv, kConvRelu
    Block block;  // kBlock
  };

 private:
  Taesd(Backend& backend, TaesdConfig config) : backend_(backend), config_(std::move(config)) {}
  static std::unique_ptr<Taesd> load_layers(const std::string& path, Backend& backend);
  // The layers as one Backend::conv_chain (pointing into `layers`, which stay put after load).
  static std::vector<ChainStep> chain_of(const std::vector<Layer>& layers);

  Backend& backend_;
  TaesdConfig config_;
  std::string source_;
  std::vector<Layer> encoder_;
  std::vector<Layer> decoder_;
  std::vector<ChainStep> encoder_steps_, decoder_steps_;  // chain_of(encoder_ / decoder_)
};

}  // namespace sd
