// The fused attention kernels for AVX2 + FMA (8 f32 lanes, 16 registers: 6 × 16 S tiles and
// 6 × 16 P·V tiles use 15), compiled with -mavx2 -mfma (see flash_attention_impl.h).
#include <cstdint>

#include "backend/cpu/flash_attention_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace sd::cpu {
namespace flash_avx2 {
namespace {

struct Vec {
  using R = __m256;
  static constexpr int W = 8, MR = 6, NVQ = 2, NVP = 2;
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static R bcast(float x) { return _mm256_set1_ps(x); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static float hmax(R v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float hsum(R v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R round(R x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2^n for whole-valued n in [-127, 127] (the exponent bits; -127 gives +0).
  static R pow2(R n) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
};

#include "backend/cpu/flash_attention_impl.h"

}  // namespace
}  // namespace flash_avx2

const FlashKernels kFlashAvx2 = flash_avx2::kTable;

}  // namespace sd::cpu
#else
namespace sd::cpu {
const FlashKernels kFlashAvx2{};
}  // namespace sd::cpu
#endif
