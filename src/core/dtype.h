// Element types and their conversions. Storage types are f32, f16 and bf16; arithmetic is done
// in f32 (bf16/f16 are loaded to float, computed on, and rounded back to nearest-even).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace sd {

enum class DType : uint8_t { F32, F16, BF16 };

inline size_t dtype_size(DType t) {
  return t == DType::F32 ? 4 : 2;
}
const char* dtype_name(DType t);             // "f32", "f16", "bf16"
DType parse_dtype(const std::string& name);  // throws sd::Error on unknown names

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

inline float to_float(float x) {
  return x;
}
inline float to_float(bf16 x) {
  uint32_t u = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
float f16_to_float_slow(uint16_t h);
inline float to_float(f16 x) {
  return f16_to_float_slow(x.bits);
}

// Round-to-nearest-even; NaN stays NaN.
inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}
uint16_t float_to_f16_slow(float f);
inline f16 to_f16(float f) {
  return f16{float_to_f16_slow(f)};
}

// Typed store helpers used by templated kernels: store<T>(float) -> T.
template <typename T>
inline T from_float(float f);
template <>
inline float from_float<float>(float f) {
  return f;
}
template <>
inline bf16 from_float<bf16>(float f) {
  return to_bf16(f);
}
template <>
inline f16 from_float<f16>(float f) {
  return to_f16(f);
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::BF16;
}
template <>
constexpr DType dtype_of<f16>() {
  return DType::F16;
}

// Converts n elements between any two storage types (host memory).
void convert(const void* src, DType src_type, void* dst, DType dst_type, size_t n);

}  // namespace sd
