// Torch-compatible CPU random numbers: the same floats as
//   g = torch.Generator().manual_seed(seed); torch.randn(shape, generator=g)   (float32)
//   torch.rand(shape, generator=g)                                              (float32)
// so that a seed gives the original StreamDiffusion's noise. Facts reproduced (PyTorch 2.x,
// ATen CPUGeneratorImpl, core/DistributionsHelper.h, native/cpu/DistributionTemplates.h):
// - engine: MT19937 seeded with the low 32 bits of the seed (standard init_genrand);
//   random() = one 32-bit output, random64() = (first << 32) | second.
// - float uniform: (random() & 0xFFFFFF) * 2^-24; double uniform: (random64() & (2^53 - 1)) *
//   2^-53.
// - randn of a contiguous float tensor with n >= 16 elements: first n float uniforms are drawn
//   into the output, then every block of 16 is transformed in place (u1 = 1 - d[j],
//   u2 = d[j + 8], r = sqrt(-2 log u1), d[j] = r cos(2π u2), d[j + 8] = r sin(2π u2), j < 8);
//   if n is not a multiple of 16, 16 fresh uniforms overwrite the LAST 16 elements and are
//   transformed the same way. ATen's AVX2 kernel computes log, sin and cos with avx_mathfun's
//   Cephes polynomials in f32 (no FMA); they are reproduced here operation by operation, so
//   the result is bit-identical to torch on CPUs where ATen dispatches to its AVX2 kernels
//   (ATen's AVX-512 build uses libm's logf/sinf/cosf instead: within 1-2 ulp of these).
// - randn with n < 16: each element is a double Box–Muller sample (u1, u2 double uniforms,
//   r = sqrt(-2 log1p(-u2)), θ = 2π u1, value r cos θ, and r sin θ is cached in the generator
//   for the next such element; manual_seed clears the cache), rounded to float.
// - rand (float): each element is one float uniform.
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "core/tensor.h"

namespace sd {

class TorchGenerator {
 public:
  static constexpr uint64_t kDefaultSeed = 67280421310721ull;  // torch's default CPU seed

  explicit TorchGenerator(uint64_t seed = kDefaultSeed) { manual_seed(seed); }

  void manual_seed(uint64_t seed);
  // A stream's seed, all 64 bits of it: below 2^32 exactly manual_seed (torch's noise, so the
  // original's); from 2^32 on, MT19937 initialised with std::seed_seq from both 32-bit halves.
  // torch itself ignores the high half (2^32 would give 0's noise), which makes 64-bit seeds
  // collide; these seeds have no torch counterpart to match, so each gets its own stream.
  void seed_wide(uint64_t seed);
  uint64_t initial_seed() const { return seed_; }

  uint32_t random() { return uint32_t(engine_()); }
  uint64_t random64();

  // torch.randn(n) / torch.rand(n) of a contiguous float32 tensor, written to out[0, n).
  void randn(float* out, int64_t n);
  void rand(float* out, int64_t n);
  // Host f32 tensors of `shape` (torch's NCHW order of draws; see to_nhwc for the engine's
  // layout).
  Tensor randn(const Shape& shape);
  Tensor rand(const Shape& shape);

 private:
  double normal_double();  // one scalar-path sample (uses and refills the cache)

  uint64_t seed_ = kDefaultSeed;
  std::mt19937 engine_;
  std::optional<double> next_double_normal_;
};

// [N, C, H, W] host f32 -> [N, H, W, C] host f32 (torch draws noise in NCHW order).
Tensor nchw_to_nhwc(const Tensor& nchw);
// [N, H, W, C] host f32 -> [N, C, H, W] host f32.
Tensor nhwc_to_nchw(const Tensor& nhwc);

}  // namespace sd
