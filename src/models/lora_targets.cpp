#include "models/lora_targets.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/host_gemm.h"

namespace sd {

void check_lora_shapes(const LoraLayer& layer, const Shape& torch_shape) {
  const Tensor& up = layer.up;
  const Tensor& down = layer.down;
  SD_CHECK(up.defined() && down.defined() && up.rank() >= 2 && down.rank() >= 2, "LoRA layer '",
           layer.key, "': up and down must be matrices or conv kernels");
  const int64_t out = torch_shape[0];
  const int64_t fan_in = torch_shape.numel() / std::max<int64_t>(out, 1);
  const int64_t r = down.dim(0);
  const bool shapes_ok = up.dim(0) == out && up.dim(1) == r && up.numel() == out * r &&
                         down.numel() == r * fan_in &&
                         (torch_shape.rank == 2 || down.rank() == 2 ||
                          (down.rank() == 4 && down.dim(1) == torch_shape[1] &&
                           down.dim(2) == torch_shape[2] && down.dim(3) == torch_shape[3]));
  SD_CHECK(shapes_ok, "LoRA layer '", layer.key, "': up ", up.shape().str(), " and down ",
           down.shape().str(), " do not fit the model's weight ", torch_shape.str(),
           " (is the LoRA for another model family?)");
}

namespace {

// w += scale · ratio · up · down (w: host f32 of `torch_shape`, contiguous; shapes checked by
// fuse()).
void add_lora_delta(const LoraLayer& layer, const Shape& torch_shape, float scale, float* w) {
  const int64_t out = torch_shape[0];
  const int64_t fan_in = torch_shape.numel() / std::max<int64_t>(out, 1);
  const Tensor& up = layer.up;
  const Tensor& down = layer.down;
  const bool f32 = up.dtype() == DType::F32 && down.dtype() == DType::F32;
  const Tensor u = f32 ? up : up.to_host_dtype(DType::F32);
  const Tensor d = f32 ? down : down.to_host_dtype(DType::F32);
  gemm_f32(out, fan_in, down.dim(0), scale * layer.ratio, u.data_as<float>(), d.data_as<float>(),
           1.f, w);
}

}  // namespace

void LoraTargets::set_base(BaseSource base, std::string describe) {
  base_ = std::move(base);
  describe_ = std::move(describe);
}

void LoraTargets::add(const std::string& module, const Weight& w, const Shape& torch_shape,
                      const Shape& stored_shape, float load_scale) {
  SD_CHECK(torch_shape.numel() == stored_shape.numel(), "LoRA target '", module,
           "': ", torch_shape.str(), " vs stored ", stored_shape.str());
  entries_[module] = Entry{w, torch_shape, stored_shape, load_scale};
}

const Shape& LoraTargets::shape(const std::string& module) const {
  auto it = entries_.find(module);
  SD_CHECK(it != entries_.end(), "no LoRA-targetable weight '", module, "'");
  return it->second.torch_shape;
}

std::vector<std::string> LoraTargets::modules() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, e] : entries_) names.push_back(name);
  return names;
}

std::vector<std::string> LoraTargets::fused() const {
  std::vector<std::string> names;
  for (const Adapter& a : adapters_) names.push_back(a.name);
  return names;
}

void LoraTargets::rebuild(Backend& backend, const std::string& module) const {
  const Entry& e = entries_.at(module);
  const Tensor original = base_(module + ".weight", e.torch_shape);
  SD_CHECK(original.shape() == e.torch_shape, describe_, ": '", module, ".weight' is ",
           original.shape().str(), ", expected ", e.torch_shape.str());
  Tensor w = original.to_host_dtype(DType::F32);  // always an owned copy
  float* p = w.data_as<float>();
  const int64_t n = w.numel();
  for (const Adapter& a : adapters_) {
    auto it = a.layers.find(module);
    if (it != a.layers.end()) add_lora_delta(it->second, e.torch_shape, a.scale, p);
  }
  if (e.load_scale != 1.f)
    for (int64_t i = 0; i < n; ++i) p[i] *= e.load_scale;
  backend.update_weight(e.w, w.reshape(e.stored_shape));
}

void LoraTargets::fuse(Backend& backend, const std::string& name,
                       const std::map<std::string, const LoraLayer*>& layers, float scale) {
  SD_CHECK(
      base_,
      "this model keeps no source of its original weights (no source), so LoRA cannot be fused "
      "(load it from a file or folder)");
  std::set<std::string> touched;
  for (const auto& [module, layer] : layers) {
    SD_CHECK(entries_.count(module), describe_, ": no LoRA-targetable weight '", module,
             "' (LoRA key '", layer->key, "')");
    check_lora_shapes(*layer, entries_.at(module).torch_shape);  // before changing anything
    touched.insert(module);
  }
  Adapter adapter{name, {}, scale};
  for (const auto& [module, layer] : layers) adapter.layers.emplace(module, *layer);
  auto it = std::find_if(adapters_.begin(), adapters_.end(),
                         [&](const Adapter& a) { return a.name == name; });
  if (it != adapters_.end()) {
    for (const auto& [module, l] : it->layers) touched.insert(module);
    *it = std::move(adapter);
  } else {
    adapters_.push_back(std::move(adapter));
  }
  for (const std::string& module : touched) rebuild(backend, module);
}

void LoraTargets::unfuse(Backend& backend, const std::string& name) {
  std::set<std::string> touched;
  std::vector<Adapter> kept;
  for (Adapter& a : adapters_) {
    if (name.empty() || a.name == name) {
      for (const auto& [module, l] : a.layers) touched.insert(module);
    } else {
      kept.push_back(std::move(a));
    }
  }
  SD_CHECK(name.empty() || kept.size() < adapters_.size(), describe_, ": no fused LoRA named '",
           name, "'");
  adapters_ = std::move(kept);
  for (const std::string& module : touched) rebuild(backend, module);
}

}  // namespace sd
