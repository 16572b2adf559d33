// Fused multi-head attention for the CPU: softmax(q kᵀ / sqrt(D)) v without a score matrix in
// memory (FlashAttention's online softmax over key blocks, Dao et al. 2022).
//
// Per work item (batch row, head, block of up to kFlashQueryBlock queries) a thread keeps the
// output rows O, the running row maxima m and sums l in its own workspace and walks the keys in
// blocks of kFlashKeyBlock. Per block and per register tile of MR query rows:
//   S = Q Kᵀ                 (MR × block, an L1-resident strip: the micro-kernel keeps an MR × 2
//                             vector tile of S in registers over the head dimension)
//   m' = max(m, rowmax S);  P = 2^(S·c − m'·c) with c = log2(e) / sqrt(D);  α = 2^((m − m')·c)
//   l = α·l + rowsum P;  O = α·O + P V   (the rescale is folded into the P·V micro-kernel)
// and at the end out = O / l. K and V are first packed per (batch, head) into f32 panels: Kᵀ in
// key tiles [D][KT] (KT = 2 vectors of keys, zero keys past Lk) and V as [Lk'][D'] rows with D
// rounded up to the vector width (zero columns), so every micro-kernel load is a full, contiguous
// vector. Keys past Lk and, when causal, keys after the query get probability exactly 0.
//
// The same algorithm is compiled for several instruction sets (flash_attention_impl.h is included
// by one .cpp per ISA, each built with its own -m flags and namespace) and chosen at run time:
// Generic (GCC vector extensions, any CPU: the portable fallback), AVX2+FMA (8 lanes, 6 × 16
// tiles) and AVX-512 (16 lanes, 12 × 32 tiles). Inputs and output are f32 or bf16 (bf16 is
// widened while packing; the arithmetic is f32). q, k, v and out are addressed through row
// strides, so q, k and v may be column ranges of one packed [B, L, 3·H·D] projection.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/flash_attention_kernels.h"
#include "core/dtype.h"

namespace sd::cpu {

enum class FlashIsa : uint8_t { Generic, Avx2, Avx512 };

const char* flash_isa_name(FlashIsa isa);
// Whether this CPU (and this build) can run `isa`.
bool flash_isa_available(FlashIsa isa);
// The fastest ISA available here.
FlashIsa flash_best_isa();

struct FlashArgs {
  const void* q = nullptr;  // element (b, i, h·D + d) at q[(b·Lq + i)·q_stride + h·D + d]
  const void* k = nullptr;  // likewise with k_stride, Lk rows per batch row
  const void* v = nullptr;  // likewise with v_stride
  void* out = nullptr;      // likewise with out_stride, Lq rows
  int64_t batch = 0, lq = 0, lk = 0, heads = 0, head_dim = 0;
  int64_t q_stride = 0, k_stride = 0, v_stride = 0, out_stride = 0;  // elements between rows
  bool causal = false;       // query i sees keys j <= i only
  DType dtype = DType::F32;  // of q, k, v and out: F32 or BF16
};

// Bytes of workspace flash_attention needs for `a` on `isa` with `threads` OpenMP threads
// (packed K and V for every (batch, head), plus per-thread buffers).
size_t flash_attention_workspace(const FlashArgs& a, FlashIsa isa, int threads);
// Computes the attention described by `a` with `threads` OpenMP threads (the caller's team size)
// and a 64-byte aligned `workspace` of flash_attention_workspace() bytes.
void flash_attention(const FlashArgs& a, FlashIsa isa, int threads, void* workspace);

}  // namespace sd::cpu
