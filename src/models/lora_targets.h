// The weights of one model that LoRA adapters may change, and the adapters fused into them.
//
// A model registers each conv / linear weight under its module name (diffusers or transformers
// naming, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q") while it loads,
// together with a source of the ORIGINAL weights (the model's file, kept mapped). Fusing then
// recomputes a touched weight from the original:
//
//   W = W_base + sum over fused adapters a of  scale_a * (alpha / rank) * up_a · down_a
//
// (conv LoRA: up [out, r, 1, 1] · down [r, in, kh, kw] flattened to [out, in·kh·kw]), applies
// the model's load-time transform (a constant factor, e.g. the text encoder's quick-GELU
// rescaling) and overwrites the backend weight in place (Backend::update_weight). Unfusing
// recomputes from the original without that adapter, so the base weights come back bit for bit
// and re-fusing with another scale never accumulates rounding. No copy of the base weights is
// kept in memory.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sd {

// One low-rank update: ΔW = (alpha / rank) · up · down.
struct LoraLayer {
  std::string key;    // the module part of the key as stored in the file, for messages
  Tensor down;        // host f32 [rank, in] or [rank, in, kh, kw]
  Tensor up;          // host f32 [out, rank] or [out, rank, 1, 1]
  float ratio = 1.f;  // alpha / rank (1 when the file gives no alpha)
  int64_t rank() const { return down.dim(0); }
};

class LoraTargets {
 public:
  // The original f32 host tensor of parameter `name` ("<module>.weight") with `shape`.
  using BaseSource = std::function<Tensor(const std::string& name, const Shape& shape)>;

  LoraTargets() = default;
  void set_base(BaseSource base, std::string describe);
  bool has_base() const { return bool(base_); }

  // Registers the weight of `module`. torch_shape: the shape of "<module>.weight" in the file
  // ([out, in] or [out, in, kh, kw]); `w` was made from a host tensor of `stored_shape` (the
  // same, or [out, in] for a 1x1 conv used as a linear) multiplied by `load_scale`.
  void add(const std::string& module, const Weight& w, const Shape& torch_shape,
           const Shape& stored_shape, float load_scale = 1.f);
  bool contains(const std::string& module) const { return entries_.count(module) > 0; }
  const Shape& shape(const std::string& module) const;
  std::vector<std::string> modules() const;
  size_t size() const { return entries_.size(); }

  // Fuses adapter `name` (layers keyed by module name, all of which must be registered here;
  // checked by the caller) with `scale`. An adapter of the same name is replaced (re-fuse with
  // another scale). Every weight the adapter touches, or touched before, is recomputed.
  void fuse(Backend& backend, const std::string& name,
            const std::map<std::string, const LoraLayer*>& layers, float scale);
  // Removes adapter `name` (all adapters when empty) and restores the weights it touched.
  void unfuse(Backend& backend, const std::string& name = "");
  std::vector<std::string> fused() const;  // adapter names, in fusing order

 private:
  struct Entry {
    Weight w;
    Shape torch_shape, stored_shape;
    float load_scale = 1.f;
  };
  struct Adapter {
    std::string name;
    std::map<std::string, LoraLayer> layers;  // owned copies (tensors share storage)
    float scale = 1.f;
  };
  void rebuild(Backend& backend, const std::string& module) const;

  BaseSource base_;
  std::string describe_;
  std::map<std::string, Entry> entries_;
  std::vector<Adapter> adapters_;
};

// Throws sd::Error naming the layer and the shapes unless `layer` fits a weight of
// `torch_shape`.
void check_lora_shapes(const LoraLayer& layer, const Shape& torch_shape);

}  // namespace sd
