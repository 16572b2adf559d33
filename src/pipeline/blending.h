// Prompt and seed blending, as livepeer's StreamDiffusion and StreamDiffusionTD offer them: a
// list of (prompt, weight) combined on the prompts' embeddings, and a list of (seed, weight)
// combined on the seeds' noises, so that a live stream can morph between styles or noises.
//
// Weights must be finite and >= 0 with a positive sum; they are divided by their sum.
//   linear   out = Σ wᵢ·xᵢ
//   slerp    two entries only: spherical interpolation from x₀ to x₁ at t = w₁ over the whole
//            flattened tensors: θ = acos(clamp(x̂₀·x̂₁, −1, 1)) (x̂ = x / ‖x‖),
//            out = sin((1−t)θ)/sin θ · x₀ + sin(tθ)/sin θ · x₁; t ≤ 0 gives x₀ and t ≥ 1 gives x₁
//            exactly, and θ < 1e-6 falls back to linear.
// So weights (1, 0) reproduce the first entry bit for bit in both modes.
#pragma once

#include <cstdint>
#include <vector>

namespace sd {

enum class BlendMode { Linear, Slerp };

// The weights divided by their sum; throws sd::Error naming `what` for a negative, non-finite
// or all-zero list.
std::vector<float> normalized_weights(const std::vector<float>& weights, const char* what);

// out[0, n) = Σ w[i]·xs[i][0, n) (weights as given, not normalized here).
void blend_linear(const std::vector<const float*>& xs, const std::vector<float>& w, int64_t n,
                  float* out);
// out[0, n) = slerp(a, b, t) as above.
void slerp(const float* a, const float* b, float t, int64_t n, float* out);

// Normalizes `weights` and blends: linear for any count, slerp for exactly two (an error
// otherwise).
void blend(BlendMode mode, const std::vector<const float*>& xs, const std::vector<float>& weights,
           int64_t n, float* out, const char* what);

}  // namespace sd
