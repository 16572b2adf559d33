// Every floating-point operation below is one rounding of the reference's. ATen's AVX2 kernels
// are compiled by GCC with -mfma, and GCC contracts a vector multiply whose only use is an add
// into an FMA (the _mm256_mul_ps / _mm256_add_ps intrinsics are plain vector arithmetic in its
// headers); those contractions are written out below with std::fma, everything else is
// separate roundings, so the compiler must not contract anything on its own.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "pipeline/torch_random.h"

#include <bit>
#include <cmath>
#include <limits>
#include <numbers>

namespace sd {

namespace {

uint32_t bits_of(float f) {
  return std::bit_cast<uint32_t>(f);
}
float float_of(uint32_t u) {
  return std::bit_cast<float>(u);
}

// avx_mathfun's log256_ps (Cephes logf), one lane. x > 0.
float cephes_log(float x) {
  const bool invalid = !(x > 0.f);
  x = std::fmax(x, float_of(0x00800000u));  // smallest normal
  int32_t exponent = int32_t(bits_of(x) >> 23);
  x = float_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));
  exponent -= 0x7f;
  float e = float(exponent);
  e = e + 1.f;
  const bool below = x < float(0.707106781186547524);
  const float tmp0 = below ? x : 0.f;
  x = x - 1.f;
  e = e - (below ? 1.f : 0.f);
  x = x + tmp0;
  const float z = x * x;
  static constexpr float kP[9] = {7.0376836292E-2f,  -1.1514610310E-1f, 1.1676998740E-1f,
                                  -1.2420140846E-1f, +1.4249322787E-1f, -1.6668057665E-1f,
                                  +2.0000714765E-1f, -2.4999993993E-1f, +3.3333331174E-1f};
  float y = kP[0];
  for (int i = 1; i < 9; ++i) y = std::fma(y, x, kP[i]);
  y = y * x;
  y = std::fma(y, z, e * -2.12194440e-4f);
  y = y - z * 0.5f;  // exact product
  x = x + y;
  x = std::fma(e, 0.693359375f, x);
  return invalid ? std::numeric_limits<float>::quiet_NaN() : x;
}

// avx_mathfun's sincos256_ps (Cephes sinf/cosf), one lane.
void cephes_sincos(float x, float* s, float* c) {
  uint32_t sign_sin = bits_of(x) & 0x80000000u;
  x = float_of(bits_of(x) & 0x7fffffffu);
  float y = x * float(1.27323954473516);  // 4 / pi
  int32_t j = int32_t(y);                 // truncation, as cvttps
  j = (j + 1) & ~1;
  y = float(j);
  const uint32_t swap_sign_sin = uint32_t(j & 4) << 29;
  const bool poly_mask = (j & 2) == 0;
  x = std::fma(y, -0.78515625f, x);
  x = std::fma(y, -2.4187564849853515625e-4f, x);
  x = std::fma(y, -3.77489497744594108e-8f, x);
  const uint32_t sign_cos = uint32_t(~(j - 2) & 4) << 29;
  sign_sin ^= swap_sign_sin;

  const float z = x * x;
  float yc = 2.443315711809948E-005f;
  yc = std::fma(yc, z, -1.388731625493765E-003f);
  yc = std::fma(yc, z, 4.166664568298827E-002f);
  yc = yc * z;
  yc = std::fma(yc, z, -(z * 0.5f));  // z * 0.5 is exact
  yc = yc + 1.f;

  float ys = -1.9515295891E-4f;
  ys = std::fma(ys, z, 8.3321608736E-3f);
  ys = std::fma(ys, z, -1.6666654611E-1f);
  ys = ys * z;
  ys = std::fma(ys, x, x);

  const float ysin2 = poly_mask ? ys : 0.f;
  const float ysin1 = poly_mask ? 0.f : yc;
  ys = ys - ysin2;
  yc = yc - ysin1;
  const float sin_v = ysin1 + ysin2;
  const float cos_v = yc + ys;
  *s = float_of(bits_of(sin_v) ^ sign_sin);
  *c = float_of(bits_of(cos_v) ^ sign_cos);
}

// ATen's NormalFill16 (AVX2) on 16 uniforms, in place.
void box_muller_16(float* d) {
  const float two_pi = float(2.0 * std::numbers::pi);
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(-2.f * cephes_log(u1));
    const float theta = two_pi * u2;
    float s, c;
    cephes_sincos(theta, &s, &c);
    d[j] = radius * c;
    d[j + 8] = radius * s;
  }
}

float uniform_float(uint32_t r) {
  return float(r & 0xFFFFFFu) * (1.f / 16777216.f);
}

}  // namespace

void TorchGenerator::manual_seed(uint64_t seed) {
  seed_ = seed;
  engine_.seed(uint32_t(seed & 0xffffffffu));
  next_double_normal_.reset();
}

void TorchGenerator::seed_wide(uint64_t seed) {
  if (seed <= 0xffffffffu) return manual_seed(seed);
  seed_ = seed;
  std::seed_seq seq{uint32_t(seed & 0xffffffffu), uint32_t(seed >> 32)};
  engine_.seed(seq);
  next_double_normal_.reset();
}

uint64_t TorchGenerator::random64() {
  const uint64_t hi = random();
  const uint64_t lo = random();
  return (hi << 32) | lo;
}

double TorchGenerator::normal_double() {
  if (next_double_normal_) {
    const double v = *next_double_normal_;
    next_double_normal_.reset();
    return v;
  }
  constexpr uint64_t kMask53 = (uint64_t(1) << 53) - 1;
  const double u1 = double(random64() & kMask53) * (1.0 / 9007199254740992.0);
  const double u2 = double(random64() & kMask53) * (1.0 / 9007199254740992.0);
  const double r = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * std::numbers::pi * u1;
  next_double_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

void TorchGenerator::randn(float* out, int64_t n) {
  if (n < 16) {
    for (int64_t i = 0; i < n; ++i) out[i] = float(normal_double());
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_float(random());
  for (int64_t i = 0; i + 16 <= n; i += 16) box_muller_16(out + i);
  if (n % 16 != 0) {
    float* tail = out + n - 16;
    for (int i = 0; i < 16; ++i) tail[i] = uniform_float(random());
    box_muller_16(tail);
  }
}

void TorchGenerator::rand(float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_float(random());
}

Tensor TorchGenerator::randn(const Shape& shape) {
  Tensor t = Tensor::host(shape, DType::F32);
  randn(t.data_as<float>(), t.numel());
  return t;
}

Tensor TorchGenerator::rand(const Shape& shape) {
  Tensor t = Tensor::host(shape, DType::F32);
  rand(t.data_as<float>(), t.numel());
  return t;
}

Tensor nchw_to_nhwc(const Tensor& nchw) {
  SD_CHECK(nchw.rank() == 4 && nchw.dtype() == DType::F32 && nchw.device() == Device::CPU,
           "nchw_to_nhwc: expected a host f32 [N, C, H, W] tensor, got ", nchw.shape().str());
  const int64_t n = nchw.dim(0), c = nchw.dim(1), h = nchw.dim(2), w = nchw.dim(3);
  Tensor out = Tensor::host(Shape{n, h, w, c}, DType::F32);
  const float* s = nchw.data_as<float>();
  float* d = out.data_as<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p) d[(b * h * w + p) * c + k] = s[(b * c + k) * h * w + p];
  return out;
}

Tensor nhwc_to_nchw(const Tensor& nhwc) {
  SD_CHECK(nhwc.rank() == 4 && nhwc.dtype() == DType::F32 && nhwc.device() == Device::CPU,
           "nhwc_to_nchw: expected a host f32 [N, H, W, C] tensor, got ", nhwc.shape().str());
  const int64_t n = nhwc.dim(0), h = nhwc.dim(1), w = nhwc.dim(2), c = nhwc.dim(3);
  Tensor out = Tensor::host(Shape{n, c, h, w}, DType::F32);
  const float* s = nhwc.data_as<float>();
  float* d = out.data_as<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t p = 0; p < h * w; ++p) d[(b * c + k) * h * w + p] = s[(b * h * w + p) * c + k];
  return out;
}

}  // namespace sd
