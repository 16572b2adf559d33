// LoRA adapter files and fusing them into a UNet and a CLIP text encoder (LCM-LoRA, style LoRAs).
//
// Formats read (.safetensors only; pickles are refused with a message to convert them):
//  - diffusers / PEFT: "<part>.<module>.lora_A.weight" / ".lora_B.weight" (part "unet" or
//    "text_encoder"; also without a part prefix, or under "base_model.model."), the older
//    diffusers spellings ".lora.down.weight" / ".lora.up.weight", text-encoder
//    ".lora_linear_layer.down.weight" and attention-processor keys
//    ("attn1.processor.to_q_lora.down.weight", "to_out_lora" = to_out.0). alpha: a
//    "<key>.alpha" tensor, else the PEFT config diffusers stores in the file's
//    "lora_adapter_metadata" ("<part>.lora_alpha", "<part>.r", alpha_pattern / rank_pattern,
//    use_rslora: alpha / sqrt(r)), else alpha = rank (ratio 1), as diffusers does.
//  - kohya-ss / A1111: "lora_unet_<module with '_' for '.'>.lora_down.weight", ".lora_up.weight",
//    ".alpha"; "lora_te_" (or "lora_te1_") for the text encoder. UNet modules may use diffusers
//    names (down_blocks_0_attentions_0_...) or the LDM block names of the original checkpoint
//    (input_blocks_1_1_proj_in, ...); both are resolved against the model's own module list.
//  Not supported, with an error naming the key: DoRA (dora_scale / use_dora), LoHa / LoKr
//  (hada_ / lokr_), SDXL's second text encoder (lora_te2_, text_encoder_2).
//
// Fusing: W = W_base + scale · (alpha / rank) · up · down, as diffusers' fuse_lora(lora_scale)
// computes it; see LoraTargets (lora_targets.h) for un-fusing and re-fusing. Every LoRA key must
// match a weight of the models given; otherwise fuse_lora throws listing the unmatched keys (or,
// with allow_unmatched, fuses the rest and reports them).
//
// Fuse before Stream::prepare (or prepare again after fusing): a prepared stream caches the
// prompt embeddings and the cross-attention K/V computed with the weights of that moment.
// Fusing a text-encoder LoRA through PromptEncoder::model_for_update() clears its cache.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "models/lora_targets.h"

namespace sd {

class UNet;
class ClipTextModel;

enum class LoraFormat { kDiffusers, kKohya };
enum class LoraPart { kUNet, kTextEncoder };

struct LoraFileLayer {
  LoraPart part = LoraPart::kUNet;
  // diffusers: the module name ("down_blocks.0...to_q", "text_model.encoder...q_proj");
  // kohya: the part after "lora_unet_" / "lora_te_" with its underscores (resolved at fusing).
  std::string module;
  LoraLayer layer;
};

class LoraFile {
 public:
  // Reads and validates `path`; throws sd::Error naming the file and the key at fault (a down
  // without an up, ranks that differ, a non-scalar alpha, an unsupported LoRA type, ...).
  static LoraFile load(const std::string& path);

  const std::string& path() const { return path_; }
  LoraFormat format() const { return format_; }
  const std::vector<LoraFileLayer>& layers() const { return layers_; }
  int count(LoraPart part) const;

 private:
  std::string path_;
  LoraFormat format_ = LoraFormat::kDiffusers;
  std::vector<LoraFileLayer> layers_;
};

struct LoraFuseReport {
  int unet_layers = 0;                 // weights changed in the UNet
  int text_layers = 0;                 // ... and in the text encoder
  std::vector<std::string> unmatched;  // keys (module part) that matched no weight
};

// Fuses `lora` with `scale` into `unet` and `text` (either may be null: then that part's layers
// are unmatched). The adapter is named `name` (default: the file path); fusing a file again
// under the same name replaces its scale. Throws before changing any weight when a key is
// unmatched (unless allow_unmatched) or shaped for another model.
LoraFuseReport fuse_lora(const LoraFile& lora, float scale, UNet* unet, ClipTextModel* text,
                         bool allow_unmatched = false, std::string name = "");
// Removes the fused adapter `name` (all when empty) from both models, restoring their weights.
void unfuse_lora(UNet* unet, ClipTextModel* text, const std::string& name = "");

}  // namespace sd
