// Branch-free f32 approximations of exp, erf and tanh that the compiler can vectorise (libm's
// scalar calls cannot be), and the activations built on them. Accuracy (checked by the
// CpuKernels tests against libm): exp ≤ 1e-6 relative, erfc ≤ 2e-6 relative
// for z <= 5 (beyond, f32 rounding of z² dominates), erf and tanh ≤ 5e-7 absolute.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend/backend.h"
#include "core/dtype.h"

namespace sd::cpu {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// c ? a : b through a bit mask. Under GCC's default -ftrapping-math a plain ?: between two
// computed floats is not if-converted (evaluating both arms could trap), which stops the loop
// from vectorising (nor is a clamp x < k ? k : x whose result feeds more arithmetic, nor
// std::min/std::max or std::floor); integer masking has no such restriction.
inline float select(bool c, float a, float b) {
  const uint32_t m = 0u - uint32_t(c);
  return bits_to_float((float_to_bits(a) & m) | (float_to_bits(b) & ~m));
}

// exp(x) for x clamped to [-87, 88] (Cephes expf: Cody–Waite reduction by n·ln2, degree-5
// polynomial for e^r on |r| <= ln2/2, then scale by 2^n through the exponent bits).
inline float exp_approx(float x) {
  x = select(x < -87.f, -87.f, x);
  x = select(x > 88.f, 88.f, x);
  // n = round(x / ln2) by the 1.5·2^23 trick (exact for |x / ln2| < 2^22).
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  return p * bits_to_float(uint32_t(int32_t(n) + 127) << 23);
}

// erfc(z) for z >= 0 (Numerical Recipes' erfcc, a Chebyshev fit with relative error < 1.2e-7
// in exact arithmetic, so the tail that GELU needs for negative inputs stays accurate).
inline float erfc_nonneg(float z) {
  const float t = 1.f / (1.f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return t * exp_approx(p - z * z);
}
inline float erf_approx(float x) {
  return std::copysign(1.f - erfc_nonneg(std::fabs(x)), x);
}

// tanh(x): Cephes tanhf's odd polynomial for |x| < 0.625, 1 − 2/(e^{2|x|} + 1) above.
inline float tanh_approx(float x) {
  const float ax = std::fabs(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float large = std::copysign(1.f - 2.f / (exp_approx(2.f * ax) + 1.f), x);
  return select(ax < 0.625f, small, large);
}

// GELU x·Φ(x) = 0.5·x·(1 + erf(x/√2)); for x < 0, 1 + erf(x/√2) = erfc(|x|/√2) is taken
// directly (no cancellation), for x >= 0 it is 2 − erfc.
inline float gelu_erf(float x) {
  const float c = erfc_nonneg(std::fabs(x) * 0.70710678118654752f);
  return 0.5f * x * select(x < 0.f, c, 2.f - c);
}
// 0.5·x·(1 + tanh(u)) = x / (1 + e^{−2u}), which stays accurate where tanh(u) → −1.
inline float gelu_tanh(float x) {
  const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return x / (1.f + exp_approx(-2.f * u));
}
inline float silu(float x) {
  return x / (1.f + exp_approx(-x));
}

// The activation as a compile-time choice, so that each kernel loop is specialised.
template <Act A>
inline float act_fn(float x) {
  if constexpr (A == Act::ReLU) return select(x > 0.f, x, 0.f);
  if constexpr (A == Act::SiLU) return silu(x);
  if constexpr (A == Act::GELU) return gelu_erf(x);
  if constexpr (A == Act::GELUTanh) return gelu_tanh(x);
  if constexpr (A == Act::Tanh) return tanh_approx(x);
  return x;
}

// Calls f.template operator()<A>() with the runtime activation as a template argument.
template <typename F>
inline void dispatch_act(Act act, F&& f) {
  switch (act) {
    case Act::None:
      f.template operator()<Act::None>();
      return;
    case Act::ReLU:
      f.template operator()<Act::ReLU>();
      return;
    case Act::SiLU:
      f.template operator()<Act::SiLU>();
      return;
    case Act::GELU:
      f.template operator()<Act::GELU>();
      return;
    case Act::GELUTanh:
      f.template operator()<Act::GELUTanh>();
      return;
    case Act::Tanh:
      f.template operator()<Act::Tanh>();
      return;
  }
}

// Storage loads and stores for the kernels' element types (f32 math in between). The bf16
// store rounds to nearest-even without a branch (same result as sd::to_bf16), so loops that
// use it still vectorise.
inline float load(const float* p, int64_t i) {
  return p[i];
}
inline float load(const bf16* p, int64_t i) {
  return bits_to_float(uint32_t(p[i].bits) << 16);
}
inline void store(float* p, int64_t i, float v) {
  p[i] = v;
}
inline void store(bf16* p, int64_t i, float v) {
  const uint32_t u = float_to_bits(v);
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  p[i].bits = uint16_t((nan ? (u | 0x00400000u) : rounded) >> 16);
}

}  // namespace sd::cpu
