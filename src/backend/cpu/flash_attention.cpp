#include "backend/cpu/flash_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sd::cpu {

namespace {

const FlashKernels& kernels_of(FlashIsa isa) {
  switch (isa) {
    case FlashIsa::Avx2:
      return kFlashAvx2;
    case FlashIsa::Avx512:
      return kFlashAvx512;
    case FlashIsa::Generic:
      break;
  }
  return kFlashGeneric;
}

bool cpu_supports(FlashIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  switch (isa) {
    case FlashIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FlashIsa::Avx512:
      return __builtin_cpu_supports("avx512f");
    case FlashIsa::Generic:
      return true;
  }
  return false;
#else
  return isa == FlashIsa::Generic;
#endif
}

FlashCall make_call(const FlashArgs& a, const FlashKernels& k) {
  SD_CHECK(a.dtype == DType::F32 || a.dtype == DType::BF16, "attention: ", dtype_name(a.dtype),
           " is not supported (f32 or bf16)");
  SD_CHECK(a.batch > 0 && a.lq > 0 && a.lk > 0 && a.heads > 0 && a.head_dim > 0,
           "attention: empty shape (batch ", a.batch, ", Lq ", a.lq, ", Lk ", a.lk, ", heads ",
           a.heads, ", head dim ", a.head_dim, ")");
  const int64_t hd = a.heads * a.head_dim;
  SD_CHECK(a.q_stride >= hd && a.k_stride >= hd && a.v_stride >= hd && a.out_stride >= hd,
           "attention: row strides must hold heads x head_dim = ", hd, " elements");
  FlashCall c;
  c.q = a.q, c.k = a.k, c.v = a.v, c.out = a.out;
  c.batch = a.batch, c.lq = a.lq, c.lk = a.lk, c.heads = a.heads, c.head_dim = a.head_dim;
  c.q_stride = a.q_stride, c.k_stride = a.k_stride, c.v_stride = a.v_stride;
  c.out_stride = a.out_stride;
  c.causal = a.causal;
  c.bf16 = a.dtype == DType::BF16;
  const int64_t w = k.width, kt = k.key_tile;
  c.dp = (a.head_dim + w - 1) / w * w;
  c.key_tiles = (a.lk + kt - 1) / kt;
  c.kpack = c.key_tiles * a.head_dim * kt;
  c.vpack = c.key_tiles * kt * c.dp;
  c.thread_floats = k.thread_floats(a.head_dim, c.dp);
  c.c = float(1.4426950408889634 / std::sqrt(double(a.head_dim)));
  return c;
}

size_t round16(int64_t floats) {
  return size_t((floats + 15) / 16 * 16);
}

}  // namespace

const char* flash_isa_name(FlashIsa isa) {
  switch (isa) {
    case FlashIsa::Generic:
      return "generic";
    case FlashIsa::Avx2:
      return "avx2";
    case FlashIsa::Avx512:
      return "avx512";
  }
  return "?";
}

bool flash_isa_available(FlashIsa isa) {
  return kernels_of(isa).width > 0 && cpu_supports(isa);
}

FlashIsa flash_best_isa() {
  for (FlashIsa isa : {FlashIsa::Avx512, FlashIsa::Avx2})
    if (flash_isa_available(isa)) return isa;
  return FlashIsa::Generic;
}

size_t flash_attention_workspace(const FlashArgs& a, FlashIsa isa, int threads) {
  SD_CHECK(flash_isa_available(isa), "attention: the ", flash_isa_name(isa),
           " kernel is not available on this CPU or build");
  const FlashCall c = make_call(a, kernels_of(isa));
  const size_t per_head = round16(c.kpack) + round16(c.vpack);
  const size_t floats =
      size_t(a.batch * a.heads) * per_head + size_t(std::max(threads, 1)) * size_t(c.thread_floats);
  return floats * sizeof(float);
}

void flash_attention(const FlashArgs& a, FlashIsa isa, int threads, void* workspace) {
  SD_CHECK(flash_isa_available(isa), "attention: the ", flash_isa_name(isa),
           " kernel is not available on this CPU or build");
  const FlashKernels& k = kernels_of(isa);
  const FlashCall c = make_call(a, k);
  SD_CHECK(reinterpret_cast<uintptr_t>(workspace) % 64 == 0,
           "attention: the workspace must be 64-byte aligned");
  const int nthr = std::max(threads, 1);
  const int64_t BH = c.batch * c.heads;
  const size_t per_head = round16(c.kpack) + round16(c.vpack);
  float* packs = static_cast<float*>(workspace);
  float* thread_ws = packs + size_t(BH) * per_head;
  // Packing work: (head, group of key tiles) so that a single head still uses every thread.
  const int64_t tiles_per_group = std::max<int64_t>(1, kFlashKeyBlock / k.key_tile);
  const int64_t groups = (c.key_tiles + tiles_per_group - 1) / tiles_per_group;
  const int64_t blocks = (c.lq + kFlashQueryBlock - 1) / kFlashQueryBlock;
  const int64_t items = BH * blocks;
#pragma omp parallel num_threads(nthr)
  {
    const int t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < BH * groups; ++it) {
      const int64_t bh = it / groups, g = it % groups;
      float* kp = packs + size_t(bh) * per_head;
      float* vp = kp + round16(c.kpack);
      const int64_t t0 = g * tiles_per_group;
      k.pack_kv(c, bh / c.heads, bh % c.heads, t0, std::min(c.key_tiles, t0 + tiles_per_group), kp,
                vp);
    }
    // Dynamic: causal items differ in cost, and a core taken by other work (decoding,
    // encoding) then delays less than its static share. Items are independent, so the result
    // does not depend on which thread runs which.
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t bh = it / blocks, q0 = (it % blocks) * kFlashQueryBlock;
      const float* kp = packs + size_t(bh) * per_head;
      const float* vp = kp + round16(c.kpack);
      k.run_rows(c, bh / c.heads, bh % c.heads, q0, std::min(kFlashQueryBlock, c.lq - q0), kp, vp,
                 thread_ws + size_t(t) * size_t(c.thread_floats));
    }
  }
}

}  // namespace sd::cpu
