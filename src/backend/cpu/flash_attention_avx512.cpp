// The fused attention kernels for AVX-512F (16 f32 lanes, 32 registers: 12 × 32 S tiles and
// 12 × 32 P·V tiles use 27), compiled with -mavx512f (see flash_attention_impl.h). Only run
// where the CPU reports AVX-512F (flash_isa_available).
#include <cstdint>

#include "backend/cpu/flash_attention_kernels.h"

#if defined(__AVX512F__)
// GCC 12's avx512fintrin.h initialises _mm512_undefined_ps() from itself, which
// -Wmaybe-uninitialized reports wherever it is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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
  static R exp2(R x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-127.f));
    const R n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const R f = _mm512_sub_ps(x, n);
    R p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
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
