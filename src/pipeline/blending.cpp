#include "pipeline/blending.h"

#include <cmath>

#include "core/error.h"

namespace sd {

std::vector<float> normalized_weights(const std::vector<float>& weights, const char* what) {
  SD_CHECK(!weights.empty(), what, ": no entries to blend");
  double sum = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    SD_CHECK(std::isfinite(weights[i]) && weights[i] >= 0, what, ": weight ", i, " is ", weights[i],
             " (weights must be finite and >= 0)");
    sum += weights[i];
  }
  SD_CHECK(sum > 0, what, ": the weights sum to 0");
  std::vector<float> w(weights.size());
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(weights[i] / sum);
  return w;
}

void blend_linear(const std::vector<const float*>& xs, const std::vector<float>& w, int64_t n,
                  float* out) {
  SD_CHECK(xs.size() == w.size() && !xs.empty(), "blend_linear: ", xs.size(), " tensors, ",
           w.size(), " weights");
  for (int64_t i = 0; i < n; ++i) out[i] = w[0] * xs[0][i];
  for (size_t k = 1; k < xs.size(); ++k)
    for (int64_t i = 0; i < n; ++i) out[i] += w[k] * xs[k][i];
}

void slerp(const float* a, const float* b, float t, int64_t n, float* out) {
  if (t <= 0.f || t >= 1.f) {
    const float* src = t <= 0.f ? a : b;
    for (int64_t i = 0; i < n; ++i) out[i] = src[i];
    return;
  }
  double aa = 0, bb = 0, ab = 0;
  for (int64_t i = 0; i < n; ++i) {
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
    ab += double(a[i]) * b[i];
  }
  const double norms = std::sqrt(aa) * std::sqrt(bb);
  const double cos = norms > 0 ? std::fmax(-1.0, std::fmin(1.0, ab / norms)) : 1.0;
  const double theta = std::acos(cos);
  double wa = 1.0 - t, wb = t;
  if (theta >= 1e-6) {
    wa = std::sin((1.0 - t) * theta) / std::sin(theta);
    wb = std::sin(t * theta) / std::sin(theta);
  }
  for (int64_t i = 0; i < n; ++i) out[i] = float(wa * a[i] + wb * b[i]);
}

void blend(BlendMode mode, const std::vector<const float*>& xs, const std::vector<float>& weights,
           int64_t n, float* out, const char* what) {
  SD_CHECK(xs.size() == weights.size(), what, ": ", xs.size(), " entries, ", weights.size(),
           " weights");
  const std::vector<float> w = normalized_weights(weights, what);
  if (mode == BlendMode::Linear) return blend_linear(xs, w, n, out);
  SD_CHECK(xs.size() == 2, what, ": slerp blends exactly two entries, got ", xs.size(),
           " (use linear)");
  slerp(xs[0], xs[1], w[1], n, out);
}

}  // namespace sd
