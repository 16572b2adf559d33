// Deterministic random weights for the UNet (core/hash_random.h), keyed by diffusers parameter
// name, for full-size benchmarks and tests without a checkpoint. tools/make_unet_full_fixtures.py
// implements the same rule, so its diffusers model and the engine's UNet hold bit-identical
// weights. Per tensor (torch shape):
//   rank >= 2 (conv kernels, linear matrices): uniform with variance 1 / fan_in, i.e. scale
//             sqrt(3 / fan_in) computed in f32, offset 0 (fan_in = numel / shape[0])
//   rank 1, name ending in ".weight" (GroupNorm / LayerNorm gamma): 1 ± 0.1
//   other rank 1 (biases, norm betas): ± 0.05
// With these the activations stay O(1) through the whole network (residual streams grow
// additively; every block re-normalises its input), so the output is a sensitive check.
#pragma once

#include <string>
#include <utility>

#include "core/tensor.h"
#include "models/unet.h"

namespace sd {

struct HashParamRule {
  float scale = 0.f;
  float offset = 0.f;
};

// The (scale, offset) passed to hash_uniform for parameter `name` of shape `shape`.
HashParamRule hash_unet_param_rule(const std::string& name, const Shape& shape);

// A host f32 tensor of `shape` filled with hash_uniform(name, scale, offset) in row-major order.
Tensor hash_host_tensor(const std::string& name, const Shape& shape, float scale,
                        float offset = 0.f);

// A UNetWeightSource producing every requested tensor from the rule above.
class HashUNetWeights : public UNetWeightSource {
 public:
  explicit HashUNetWeights(std::string label = "hash-random UNet weights")
      : label_(std::move(label)) {}
  Tensor get(const std::string& name, const Shape& expect) override;
  std::string describe() const override { return label_; }
  int64_t params() const { return params_; }  // elements handed out so far

 private:
  std::string label_;
  int64_t params_ = 0;
};

}  // namespace sd
