// Attention through the CPU backend: the fused kernel (flash_attention.h) on every ISA this CPU
// runs against the oneDNN kernel it replaces (per (head, query chunk): two single-threaded
// oneDNN matmuls around a softmax of the chunk's f32 scores), in the same run with the kernels'
// timed calls interleaved, so that both see the same machine. Shapes: the UNet's
// self-attention at 512² (4096 tokens) and 256² (1024 tokens) for SD 1.x (8 heads of 40 / 80)
// and SD 2.x (5 / 10 heads of 64), its cross-attention (77 keys), a batch of 2, and CLIP's
// causal 77-token attention. GFLOP = 4·B·Lq·Lk·H·D (half of it when causal).
// Set SD_BENCH_ATTENTION_RUNS to change the number of timed calls per kernel (default 5).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/flash_attention.h"
#include "bench.h"

namespace {

using namespace sd;

struct Shape4 {
  const char* what;
  int64_t b, lq, lk, heads, d;
  bool causal;
};

void bench_dtype(const std::string& dtype, int runs) {
  BackendOptions o;
  o.dtype = dtype;
  auto be = make_backend(o);
  std::printf("%s (%s)\n", dtype.c_str(), be->description().c_str());
  std::vector<std::string> kernels = {"onednn"};
  for (cpu::FlashIsa isa : {cpu::FlashIsa::Generic, cpu::FlashIsa::Avx2, cpu::FlashIsa::Avx512})
    if (cpu::flash_isa_available(isa)) kernels.push_back(cpu::flash_isa_name(isa));
  const Shape4 shapes[] = {
      {"SD1.x 512^2 self 4096x4096 8x40", 1, 4096, 4096, 8, 40, false},
      {"SD2.x 512^2 self 4096x4096 5x64", 1, 4096, 4096, 5, 64, false},
      {"SD1.x 256^2 self 1024x1024 8x40", 1, 1024, 1024, 8, 40, false},
      {"SD1.x 256^2 lvl2 256x256 8x80", 1, 256, 256, 8, 80, false},
      {"SD1.x 512^2 lvl2 1024x1024 8x80", 1, 1024, 1024, 8, 80, false},
      {"SD2.x 512^2 lvl2 1024x1024 10x64", 1, 1024, 1024, 10, 64, false},
      {"SD1.x 512^2 lvl3 256x256 8x160", 1, 256, 256, 8, 160, false},
      {"SD1.x 512^2 cross 4096x77 8x40", 1, 4096, 77, 8, 40, false},
      {"batch 2, 1024x1024 8x40", 2, 1024, 1024, 8, 40, false},
      {"CLIP causal 77x77 12x64", 1, 77, 77, 12, 64, true},
      {"VAE mid 4096x4096 1x512", 1, 4096, 4096, 1, 512, false},
  };
  std::printf("  %-36s", "shape \\ kernel: min / median ms");
  for (const std::string& k : kernels) std::printf(" %19s", k.c_str());
  std::printf("   best fused vs onednn (min)\n");
  for (const Shape4& s : shapes) {
    const int64_t hd = s.heads * s.d;
    const Tensor q = bench::persistent_input(*be, {s.b, s.lq, hd}, 0.013f);
    const Tensor k = bench::persistent_input(*be, {s.b, s.lk, hd}, 0.007f);
    const Tensor v = bench::persistent_input(*be, {s.b, s.lk, hd}, 0.011f);
    const double gflop =
        4.0 * double(s.b * s.lq) * double(s.lk) * double(hd) * 1e-9 * (s.causal ? 0.5 : 1.0);
    // Plan every kernel once (primitives, arena), then interleave the timed calls.
    for (const std::string& kname : kernels) {
      cpu_set_attention_kernel(*be, kname);
      be->attention(q, k, v, int(s.heads), s.causal);
      be->synchronize();
    }
    be->arena().reserve(be->arena().peak());
    std::vector<std::vector<double>> ms(kernels.size());
    const int reps = s.lq * s.lk >= 4096 * 4096 ? runs : runs * 4;
    for (int r = 0; r < reps; ++r)
      for (size_t i = 0; i < kernels.size(); ++i) {
        cpu_set_attention_kernel(*be, kernels[i]);
        const auto t0 = std::chrono::steady_clock::now();
        be->attention(q, k, v, int(s.heads), s.causal);
        be->synchronize();
        ms[i].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
      }
    std::printf("  %-36s", s.what);
    double onednn_min = 0, best_min = 1e30;
    for (size_t i = 0; i < kernels.size(); ++i) {
      const bench::Stats st = bench::stats_of(ms[i]);
      const double mn = st.min_ms, med = st.median_ms;
      std::printf(" %8.2f / %8.2f", mn, med);
      if (i == 0) onednn_min = mn;
      if (i > 0) best_min = std::min(best_min, mn);
    }
    std::printf("   %.2fx, %.0f GFLOP/s (%.2f GFLOP)\n", onednn_min / best_min,
                gflop / (best_min * 1e-3), gflop);
    std::fflush(stdout);
  }
  cpu_set_attention_kernel(*be, "auto");
}

}  // namespace

SD_BENCH("attention") {
  int runs = 5;
  if (const char* env = std::getenv("SD_BENCH_ATTENTION_RUNS")) runs = std::max(1, std::atoi(env));
  for (const std::string& dtype : bench::cpu_dtypes()) bench_dtype(dtype, runs);
  if (!cpu_has_native_bf16())
    std::printf("bf16: skipped, this CPU does not run bf16 natively (needs AVX512-BF16)\n");
}
