#include "models/unet_hash_weights.h"

#include <cmath>

#include "core/error.h"
#include "core/hash_random.h"

namespace sd {

HashParamRule hash_unet_param_rule(const std::string& name, const Shape& shape) {
  SD_CHECK(shape.rank >= 1 && shape.numel() > 0, "hash UNet weight '", name,
           "': empty or scalar shape");
  if (shape.rank >= 2) {
    const int64_t fan_in = shape.numel() / shape[0];
    return {std::sqrt(3.f / float(fan_in)), 0.f};
  }
  const std::string suffix = ".weight";
  const bool is_weight = name.size() > suffix.size() &&
                         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  if (is_weight) return {0.1f, 1.f};  // a norm's gamma
  return {0.05f, 0.f};
}

Tensor hash_host_tensor(const std::string& name, const Shape& shape, float scale, float offset) {
  Tensor t = Tensor::host(shape, DType::F32);
  hash_uniform(name, scale, offset, t.data_as<float>(), size_t(t.numel()));
  return t;
}

Tensor HashUNetWeights::get(const std::string& name, const Shape& expect) {
  const HashParamRule r = hash_unet_param_rule(name, expect);
  Tensor t = hash_host_tensor(name, expect, r.scale, r.offset);
  params_ += t.numel();
  return t;
}

}  // namespace sd
