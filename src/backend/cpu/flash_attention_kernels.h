// The interface between the fused attention driver (flash_attention.cpp) and its per-ISA kernels
// (flash_attention_impl.h, compiled once per instruction set). Plain data and function pointers
// only: the per-ISA translation units are built with their own -m flags and must share no inline
// code with the rest of the program (a shared inline function compiled with AVX-512 could be the
// copy the linker keeps, and would then run on CPUs without it).
#pragma once

#include <cstdint>

namespace sd::cpu {

constexpr int64_t kFlashQueryBlock = 192;  // query rows per work item (a multiple of every MR)
constexpr int64_t kFlashKeyBlock = 256;    // keys per online-softmax step (a multiple of every KT)

// One call, with the sizes the driver derived for one ISA.
struct FlashCall {
  const void* q = nullptr;  // element (b, i, h·D + d) at q[(b·Lq + i)·q_stride + h·D + d]
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  int64_t batch = 0, lq = 0, lk = 0, heads = 0, head_dim = 0;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0, out_stride = 0;
  bool causal = false;
  bool bf16 = false;          // q, k, v and out hold bf16 (else f32)
  int64_t dp = 0;             // head_dim rounded up to the vector width
  int64_t key_tiles = 0;      // ceil(Lk / KT)
  int64_t kpack = 0;          // floats of packed Kᵀ per (batch, head): key_tiles · D · KT
  int64_t vpack = 0;          // floats of packed V per (batch, head): key_tiles · KT · dp
  int64_t thread_floats = 0;  // per-thread workspace in floats (a multiple of 16)
  float c = 0.f;              // log2(e) / sqrt(D)
};

// The kernels of one ISA.
struct FlashKernels {
  int width = 0;     // f32 lanes per vector
  int mr = 0;        // query rows per register tile
  int key_tile = 0;  // KT: keys per Kᵀ tile (two vectors)
  // Floats of per-thread workspace for head dimension D (padded to dp); a multiple of 16.
  int64_t (*thread_floats)(int64_t head_dim, int64_t dp) = nullptr;
  // Packs key tiles [t0, t1) of head (b, h): the Kᵀ tiles into kp and the V rows into vp (the
  // head's panels, c.kpack and c.vpack floats; only the given tiles' parts are written).
  void (*pack_kv)(const FlashCall& c, int64_t b, int64_t h, int64_t t0, int64_t t1, float* kp,
                  float* vp) = nullptr;
  // Queries [q0, q0 + rows) of head (b, h), 0 < rows <= kFlashQueryBlock, with the packed panels
  // of that head; `ws` is the thread's workspace (c.thread_floats floats, 64-byte aligned).
  void (*run_rows)(const FlashCall& c, int64_t b, int64_t h, int64_t q0, int64_t rows,
                   const float* kp, const float* vp, float* ws) = nullptr;
};

// Per-ISA tables (flash_attention_{generic,avx2,avx512}.cpp); the x86 ones have width 0 when
// the build could not compile them.
extern const FlashKernels kFlashGeneric;
extern const FlashKernels kFlashAvx2;
extern const FlashKernels kFlashAvx512;

}  // namespace sd::cpu
