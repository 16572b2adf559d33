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
  // 2^x: x = n + f with n = round(x), |f| <= 1/2; Cephes exp2f's polynomial for 2^f; 2^n
  // through the exponent bits (n = -127 gives +0).
  static R exp2(R x) {
    x = x < -127.f ? R{} - 127.f : x;
    const R n = (x + 12582912.f) - 12582912.f;
    const R f = x - n;
    R p = R{} + 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.f;
    const I8 e = (__builtin_convertvector(n, I8) + 127) << 23;
    R scale;
    __builtin_memcpy(&scale, &e, sizeof(R));
    return p * scale;
  }
};

#include "backend/cpu/flash_attention_impl.h"

}  // namespace
}  // namespace flash_generic

const FlashKernels kFlashGeneric = flash_generic::kTable;

}  // namespace sd::cpu
