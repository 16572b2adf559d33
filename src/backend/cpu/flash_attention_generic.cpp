// The fused attention kernels on GCC/Clang vector extensions (8 f32 lanes): the portable
// fallback, compiled with the build's default flags (see flash_attention_impl.h).
#include <cstdint>

#include "backend/cpu/flash_attention_kernels.h"

namespace sd::cpu {
namespace flash_generic {
namespace {

typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

struct Vec {
  using R = F8;
  static constexpr int W = 8, MR = 4, NVQ = 2, NVP = 2;
  static R zero() { return R{}; }
  static R load(const float* p) {
    R r;
    __builtin_memcpy(&r, p, sizeof(R));
    return r;
  }
  static void store(float* p, R v) { __builtin_memcpy(p, &v, sizeof(R)); }
  static R bcast(float x) { return R{} + x; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R mul(R a, R b) { return a * b; }
  static R add(R a, R b) { return a + b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static float hmax(R v) {
    float m = v[0];
    for (int i = 1; i < W; ++i) m = v[i] > m ? v[i] : m;
    return m;
  }
  static float hsum(R v) {
    float s = 0.f;
    for (int i = 0; i < W; ++i) s += v[i];
    return s;
  }
  static R sub(R a, R b) { return a - b; }
  // Round to nearest even for |x| < 2^22 (adding and removing 1.5 · 2^23).
  static R round(R x) { return (x + 12582912.f) - 12582912.f; }
  // 2^n for whole-valued n in [-127, 127] (the exponent bits; -127 gives +0).
  static R pow2(R n) {
    const I8 e = (__builtin_convertvector(n, I8) + 127) << 23;
    R r;
    __builtin_memcpy(&r, &e, sizeof(R));
    return r;
  }
};

#include "backend/cpu/flash_attention_impl.h"

}  // namespace
}  // namespace flash_generic

const FlashKernels kFlashGeneric = flash_generic::kTable;

}  // namespace sd::cpu
