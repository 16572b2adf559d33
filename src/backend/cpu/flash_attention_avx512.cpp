// The fused attention kernels for AVX-512F (16 f32 lanes, 32 registers: 12 × 32 S tiles and
// 12 × 32 P·V tiles use 27), compiled with -mavx512f (see flash_attention_impl.h). Only run
// where the CPU reports AVX-512F (flash_isa_available).
#include <cstdint>

#include "backend/cpu/flash_attention_kernels.h"

#if defined(__AVX512F__)
// GCC 12's avx512fintrin.h initialises _mm512_undefined_ps() from itself, which
// -Wmaybe-uninitialized reports wherever it is inlined.
#if !defined(__clang__)  // a GCC warning (clang does not know it)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

namespace sd::cpu {
namespace flash_avx512 {
namespace {

struct Vec {
  using R = __m512;
  static constexpr int W = 16, MR = 12, NVQ = 2, NVP = 2;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  static R bcast(float x) { return _mm512_set1_ps(x); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static float hmax(R v) { return _mm512_reduce_max_ps(v); }
  static float hsum(R v) { return _mm512_reduce_add_ps(v); }
  // As the generic kernel's exp2 (Cephes exp2f polynomial, n = -127 gives +0).
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R round(R x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // 2^n for whole-valued n in [-127, 127] (the exponent bits; -127 gives +0).
  static R pow2(R n) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
};

#include "backend/cpu/flash_attention_impl.h"

}  // namespace
}  // namespace flash_avx512

const FlashKernels kFlashAvx512 = flash_avx512::kTable;

}  // namespace sd::cpu
#else
namespace sd::cpu {
const FlashKernels kFlashAvx512{};
}  // namespace sd::cpu
#endif
