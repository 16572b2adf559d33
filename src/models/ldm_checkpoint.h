// Single-file Stable Diffusion checkpoints in the original LDM (CompVis / A1111) layout:
// one .safetensors holding
//   model.diffusion_model.*   the UNet          (input_blocks / middle_block / output_blocks)
//   first_stage_model.*       the AutoencoderKL (encoder.down.N.block.M / mid.attn_1 / ...)
//   cond_stage_model.*        the text encoder  (transformer.* = OpenAI CLIP for SD 1.x,
//                                                model.* = OpenCLIP for SD 2.x)
//
// Family detection (from the tensors, nothing else is trusted):
//   SD 1.x: UNet cross-attention context width 768 (attn2.to_k.weight [*, 768]) and conv 1x1
//           proj_in/proj_out ([C, C, 1, 1]); text encoder, if present,
//           cond_stage_model.transformer.
//   SD 2.x: width 1024 and linear proj_in/proj_out ([C, C]); cond_stage_model.model. This covers
//           SD 2.0/2.1 (base and 768-v) and sd-turbo, which share the architecture (sd-turbo is
//           the SD 2.1 base architecture run at 512²); the tensors cannot tell them apart.
// Other architectures (SDXL's conditioner.embedders, inpainting/depth UNets with conv_in taking
// more than 4 channels, class-conditioned UNets with label_emb) are refused by name.
//
// A single file carries no config. The configs assumed for the detected family are diffusers'
// configs of the reference models (sd15_unet_config(), sd21_unet_config() in models/unet.h,
// AutoencoderKLConfig::stable_diffusion()):
//   SD 1.5 UNet: block_out_channels [320, 640, 1280, 1280], layers_per_block 2, 8 heads,
//                cross_attention_dim 768, conv proj_in (runwayml/stable-diffusion-v1-5)
//   SD 2.1 UNet: same channels and layers, heads [5, 10, 20, 20] (head dim 64),
//                cross_attention_dim 1024, linear proj_in (stabilityai/stable-diffusion-2-1-base,
//                stabilityai/sd-turbo)
//   VAE (both): block_out_channels [128, 256, 512, 512], layers_per_block 2, latent 4,
//               norm groups 32, scaling_factor 0.18215
// They apply only when the detected widths are the full-size ones (full_size); any other UNet
// in the LDM layout (e.g. a distilled or a test model) loads with its config given explicitly,
// and every tensor's shape is still checked against it.
//
// Names: diffusers' convert_ldm_unet_checkpoint / convert_ldm_vae_checkpoint map LDM names to
// diffusers names; the functions here go the other way, from the diffusers name the model code
// asks for to the LDM name in the file (so the UNet and VAE load through the same code as a
// diffusers folder). With L_b = layers_per_block of down block b and n blocks:
//   conv_in                       input_blocks.0.0
//   down_blocks.b.resnets.j       input_blocks.(1 + sum_{k<b}(L_k + 1) + j).0
//   down_blocks.b.attentions.j    input_blocks.(same).1
//   down_blocks.b.downsamplers.0.conv  input_blocks.(1 + sum_{k<b}(L_k + 1) + L_b).0.op
//   mid_block.resnets.k / attentions.0   middle_block.(2k) / middle_block.1
//   up_blocks.b.resnets.j         output_blocks.(sum_{k<b}(L_{n-1-k} + 1) + j).0
//   up_blocks.b.attentions.j      output_blocks.(same).1
//   up_blocks.b.upsamplers.0.conv output_blocks.(last layer of the block).(2 if it has
//                                 attentions, else 1).conv
//   time_embedding.linear_1 / _2  time_embed.0 / time_embed.2;  conv_norm_out / conv_out  out.0 /
//                                 out.2
//   inside resnets: norm1 in_layers.0, conv1 in_layers.2, time_emb_proj emb_layers.1,
//                   norm2 out_layers.0, conv2 out_layers.3, conv_shortcut skip_connection
//   inside attentions: the same names.
// VAE: {encoder,decoder}.conv_norm_out -> .norm_out; encoder.down_blocks.b.resnets.j ->
//   encoder.down.b.block.j; decoder.up_blocks.b -> decoder.up.(n-1-b) (reversed);
//   downsamplers.0 -> downsample, upsamplers.0 -> upsample; mid_block.resnets.k -> mid.block_(k+1);
//   mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0} ->
//   mid.attn_1.{norm,q,k,v,proj_out}; conv_shortcut -> nin_shortcut. The attention matrices are 1x1
//   convs [C, C, 1, 1] in LDM files and linears [C, C] in diffusers: served reshaped.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "models/unet.h"

namespace sd {

class SafetensorsFile;
class ClipTextModel;
struct ClipTextConfig;
class AutoencoderKL;
struct AutoencoderKLConfig;

// Throws sd::Error telling the user to convert to .safetensors when `path` is a PyTorch pickle
// checkpoint: by extension (.ckpt .pt .pth .bin .pkl) or by content (a zip archive, as
// torch.save writes, or a raw pickle stream). Does nothing for other files.
void refuse_pickle_checkpoint(const std::string& path);

enum class LdmFamily { kSD1, kSD2 };
// "SD 1.x" / "SD 2.x (SD 2.0/2.1, sd-turbo)".
const char* ldm_family_name(LdmFamily family);

enum class LdmTextEncoder { kNone, kOpenAIClip, kOpenClip };

struct LdmCheckpointInfo {
  LdmFamily family = LdmFamily::kSD1;
  int cross_attention_dim = 0;     // width of the text context (attn2.to_k.weight columns)
  bool linear_projection = false;  // proj_in is a linear [C, C] (SD 2.x), not a 1x1 conv
  int model_channels = 0;          // conv_in output channels (320 in SD 1/2)
  int in_channels = 0;             // conv_in input channels (4)
  bool full_size = false;          // widths of SD 1.5 / SD 2.1: the default configs apply
  bool has_vae = false;            // first_stage_model.*
  LdmTextEncoder text_encoder = LdmTextEncoder::kNone;
  // Parameters (elements) per part; `other` counts tensors outside the three prefixes (EMA
  // copies, model_ema.*, alphas_cumprod, ...), which loading ignores.
  int64_t unet_params = 0, vae_params = 0, text_encoder_params = 0, other_params = 0;
};

// The LDM name (without "model.diffusion_model.") of diffusers UNet parameter `name` for a UNet
// of `config`; throws sd::Error for a name that has no LDM counterpart.
std::string ldm_unet_tensor_name(const std::string& name, const UNetConfig& config);
// The LDM name (without "first_stage_model.") of diffusers AutoencoderKL parameter `name`, for a
// VAE with `num_blocks` down (and up) blocks.
std::string ldm_vae_tensor_name(const std::string& name, int num_blocks);

class LdmCheckpoint {
 public:
  static constexpr const char* kUNetPrefix = "model.diffusion_model.";
  static constexpr const char* kVaePrefix = "first_stage_model.";
  static constexpr const char* kTextPrefix = "cond_stage_model.";

  // Opens and inspects `path`. Throws sd::Error for pickles (see refuse_pickle_checkpoint), for
  // files without model.diffusion_model.* and for architectures other than SD 1.x / 2.x, naming
  // the file and what was found.
  static std::unique_ptr<LdmCheckpoint> open(const std::string& path);
  // True when the (already open) file holds LDM UNet tensors.
  static bool is_ldm(const SafetensorsFile& file);
  ~LdmCheckpoint();

  const std::string& path() const;
  const SafetensorsFile& file() const { return *file_; }
  const LdmCheckpointInfo& info() const { return info_; }

  // The assumed diffusers UNet config for the detected family; throws when the checkpoint is
  // not full-size (then a config must be given).
  UNetConfig default_unet_config() const;
  // The UNet with `config`, or default_unet_config() when null. Shapes are checked per tensor;
  // every model.diffusion_model.* tensor must be used.
  std::unique_ptr<UNet> load_unet(Backend& backend, const UNetConfig* config = nullptr) const;
  // The assumed VAE config (the SD VAE) when first_stage_model.* has its shapes (encoder.conv_in
  // [128, 3, 3, 3], 4 down blocks); throws otherwise.
  AutoencoderKLConfig default_vae_config() const;
  // The VAE with `config`, or default_vae_config() when null (shapes checked per tensor; every
  // first_stage_model.* tensor must be used).
  std::unique_ptr<AutoencoderKL> load_vae(Backend& backend,
                                          const AutoencoderKLConfig* config = nullptr) const;
  // The text encoder through ClipTextModel's single-file path: with `config`, or (null) the
  // config inferred from the shapes (ViT-L/14-like with quick_gelu for SD 1.x names, OpenCLIP
  // with gelu for SD 2.x names).
  std::unique_ptr<ClipTextModel> load_text_encoder(Backend& backend,
                                                   const ClipTextConfig* config = nullptr) const;

 private:
  LdmCheckpoint() = default;
  std::shared_ptr<SafetensorsFile> file_;
  LdmCheckpointInfo info_;
};

// UNet weights by diffusers name from an LDM checkpoint (the file must outlive this object).
class LdmUNetWeights : public UNetWeightSource {
 public:
  LdmUNetWeights(const SafetensorsFile& file, UNetConfig config);
  // The same, keeping the file open for as long as this source lives (for LoRA fusing).
  LdmUNetWeights(std::shared_ptr<const SafetensorsFile> file, UNetConfig config);
  void release_resident() override;
  Tensor get(const std::string& name, const Shape& expect) override;
  void check_all_used() const override;  // every model.diffusion_model.* tensor
  std::string describe() const override;

 private:
  std::shared_ptr<const SafetensorsFile> keep_;
  const SafetensorsFile& file_;
  UNetConfig config_;
  std::set<std::string> used_;
};

// AutoencoderKL weights by diffusers name from an LDM checkpoint (f32 host tensors; the
// attention 1x1 convs are returned as the [C, C] linears diffusers names), for `num_blocks`
// encoder/decoder blocks (4 in SD). (AutoencoderKL::create takes the UNet's source interface.)
class LdmVaeWeights : public UNetWeightSource {
 public:
  LdmVaeWeights(const SafetensorsFile& file, int num_blocks);
  // Throws naming the file, both names and both shapes when absent or misshaped.
  Tensor get(const std::string& name, const Shape& expect) override;
  void check_all_used() const override;  // every first_stage_model.* tensor
  std::string describe() const override;

 private:
  const SafetensorsFile& file_;
  int num_blocks_;
  std::set<std::string> used_;
};

}  // namespace sd
