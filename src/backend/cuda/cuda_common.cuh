// Device helpers shared by the backend's kernels: element types, activations, vector packs,
// block reductions and the dtype dispatch used by the launchers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"

namespace sd::cuda {

// ---- element types: every kernel computes in f32 ------------------------------------------
__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_f32(__half x) {
  return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}

// ---- activations (precise libm functions: the f32 results match the CPU to ~1 ulp) --------
__device__ __forceinline__ float gelu_erf(float x) {
  return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.79788456080286536f;  // sqrt(2 / pi)
  return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float silu(float x) {
  return x / (1.f + expf(-x));
}

__device__ __forceinline__ float apply_act(Act act, float x) {
  switch (act) {
    case Act::None:
      return x;
    case Act::ReLU:
      return fmaxf(x, 0.f);
    case Act::SiLU:
      return silu(x);
    case Act::GELU:
      return gelu_erf(x);
    case Act::GELUTanh:
      return gelu_tanh(x);
    case Act::Tanh:
      return tanhf(x);
  }
  return x;
}

// ---- 16-byte packs ------------------------------------------------------------------------
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};
template <typename T>
constexpr int kPack = 16 / sizeof(T);

inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ---- launch geometry ----------------------------------------------------------------------
constexpr int kThreads = 256;
// Blocks for a grid-stride loop over `work` items: enough to fill the GPU, no more.
inline unsigned grid_for(int64_t work, int threads = kThreads) {
  int64_t blocks = (work + threads - 1) / threads;
  int64_t cap = int64_t(sm_count()) * 16;
  if (blocks > cap) blocks = cap;
  return unsigned(blocks < 1 ? 1 : blocks);
}

// ---- block reductions (deterministic: fixed order) ----------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// All threads of the block get the result. `scratch` holds 32 floats; blockDim.x % 32 == 0.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = kMax ? -INFINITY : 0.f;
  for (int w = 0; w < warps; ++w) r = kMax ? fmaxf(r, scratch[w]) : r + scratch[w];
  return r;
}

// ---- dtype dispatch -----------------------------------------------------------------------
template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T = float or __nv_bfloat16 for the backend's compute dtypes.
template <typename F>
void dispatch_compute(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::F32:
      f(TypeTag<float>{});
      return;
    case DType::BF16:
      f(TypeTag<__nv_bfloat16>{});
      return;
    default:
      fail("CUDA ", op, ": dtype ", dtype_name(t), " is not supported (f32 or bf16)");
  }
}

// Also f16 (for casts).
template <typename F>
void dispatch_storage(DType t, F&& f) {
  switch (t) {
    case DType::F32:
      f(TypeTag<float>{});
      return;
    case DType::BF16:
      f(TypeTag<__nv_bfloat16>{});
      return;
    case DType::F16:
      f(TypeTag<__half>{});
      return;
  }
}

}  // namespace sd::cuda
