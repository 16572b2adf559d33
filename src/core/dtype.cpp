#include "core/dtype.h"

#include "core/error.h"

namespace sd {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  if (name == "f32" || name == "fp32" || name == "float32") return DType::F32;
  if (name == "f16" || name == "fp16" || name == "float16") return DType::F16;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  fail("unknown dtype '", name, "' (expected f32, f16 or bf16)");
}

float f16_to_float_slow(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t float_to_f16_slow(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (absu >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf
  if (absu < 0x38800000u) {                                  // subnormal or zero in f16
    if (absu < 0x33000000u) return uint16_t(sign);
    uint32_t e = absu >> 23;
    uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14 + (113 - e) - 1
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u);  // round to nearest even
  return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

void convert(const void* src, DType st, void* dst, DType dt, size_t n) {
  if (st == dt) {
    std::memcpy(dst, src, n * dtype_size(st));
    return;
  }
  auto load = [&](size_t i) -> float {
    switch (st) {
      case DType::F32:
        return static_cast<const float*>(src)[i];
      case DType::F16:
        return to_float(static_cast<const f16*>(src)[i]);
      case DType::BF16:
        return to_float(static_cast<const bf16*>(src)[i]);
    }
    return 0.f;
  };
  switch (dt) {
    case DType::F32:
      for (size_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = load(i);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) static_cast<f16*>(dst)[i] = to_f16(load(i));
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) static_cast<bf16*>(dst)[i] = to_bf16(load(i));
      break;
  }
}

}  // namespace sd
