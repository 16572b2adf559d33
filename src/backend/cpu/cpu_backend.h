// The CPU backend: oneDNN convolutions, matrix products and attention (dnnl_kernels.h) and
// OpenMP kernels for the rest (cpu_kernels.h), on host memory, NHWC activations.
//
// Compute dtype: "auto" is bf16 where oneDNN runs bf16 natively (AVX512-BF16 or newer), else
// f32; "bf16" on a CPU without it is an error. Activations are stored in the compute dtype;
// norm statistics, softmax and accumulation are f32. A CpuBackend is driven by one thread at a
// time (kernels may run on all cores through OpenMP).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace sd {

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options);

// Test and benchmark hooks.
struct CpuBackendStats {
  size_t primitives_created = 0;  // oneDNN primitives built (primitive-cache misses)
  size_t weight_reorders = 0;     // weights reordered into a primitive's preferred layout
  size_t cached_primitives = 0;
  std::string last_impl;  // oneDNN implementation name of the last primitive created
  // Floating-point operations of the convolutions, matrix products and attention run so far
  // (a multiply-add counts 2), from the shapes of the calls: a model pass's FLOPs are the
  // difference across it.
  uint64_t flops = 0;
  // Bytes written by copy_from_host / copy_to_host so far (the destination's size).
  uint64_t host_copy_bytes = 0;
};
// Throws sd::Error if `backend` is not a CPU backend.
CpuBackendStats cpu_backend_stats(const Backend& backend);
// Rows per attention query chunk of the oneDNN attention (0 = automatic: f32 scores of one chunk
// stay under 512 KiB).
void cpu_set_attention_chunk_rows(Backend& backend, int64_t rows);
// The attention kernel: "auto" (the fused kernel, flash_attention.h, on the best ISA here, for
// head dims up to kCpuFusedAttentionMaxHeadDim; oneDNN's chunked matmuls above), "onednn", or a
// fused kernel on one ISA: "generic", "avx2", "avx512" (an error where this CPU lacks it).
void cpu_set_attention_kernel(Backend& backend, const std::string& kernel);
constexpr int64_t kCpuFusedAttentionMaxHeadDim = 512;
// conv_chain as one chain with blocked intermediates (true, the default) or as conv2d /
// upsample calls one by one (Backend's default, for benchmarks and tests comparing the two).
void cpu_set_conv_chain_fused(Backend& backend, bool fused);
// Whether this CPU runs bf16 convolutions and matrix products natively (so "bf16" is allowed).
bool cpu_has_native_bf16();

}  // namespace sd
