// The UNet with the full-size SD 1.5 architecture on deterministic hash-random weights
// (models/unet_hash_weights.h), one batch row, f32 (and bf16 where the CPU runs it natively), at
// 256x256 and 512x512 images (32x32 and 64x64 latents), with the cross-attention K/V and the time
// embedding precomputed (the per-frame path) and, at 256x256, also without. The arena is planned
// before timing (one untimed pass, then reserve(peak())). GFLOP are counted by the backend over
// the untimed pass (cpu_backend_stats().flops: convolutions, matrix products, attention, from
// their shapes). Set SD_BENCH_UNET_SIZES=256 to skip 512x512, and SD_BENCH_UNET_ARCH to another
// reference UNet (sd21, bk-sdm-base, bk-sdm-small, bk-sdm-tiny, sdxs-512: models/unet.h) instead
// of sd15.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "bench.h"
#include "models/ldm_checkpoint.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"

using namespace sd;

SD_BENCH("unet") {
  const char* arch_env = std::getenv("SD_BENCH_UNET_ARCH");
  const std::string arch = arch_env && *arch_env ? arch_env : "sd15";
  const UNetConfig config = reference_unet_config(arch);
  std::vector<int> sizes = {256, 512};
  if (const char* env = std::getenv("SD_BENCH_UNET_SIZES"); env && std::string(env) == "256")
    sizes = {256};
  const std::vector<std::string> dtypes = sd::bench::cpu_dtypes();
  for (const std::string& dtype : dtypes) {
    BackendOptions opts;
    opts.dtype = dtype;
    auto backend = make_backend(opts);
    HashUNetWeights weights("hash-random " + arch + " UNet weights");
    auto t0 = std::chrono::steady_clock::now();
    auto model = UNet::create(config, weights, *backend);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("backend: %s\n%s UNet: %.1f M parameters, built in %.1f s\n",
                backend->description().c_str(), arch.c_str(), double(weights.params()) * 1e-6,
                load_s);
    std::fflush(stdout);
    Tensor states =
        sd::bench::persistent_input(*backend, Shape{1, 77, config.cross_attention_dim}, 0.011f);
    UNetKVCache kv = model->precompute_kv(states);
    Tensor temb = model->time_embedding({500}, 1);
    for (int size : sizes) {
      Tensor sample =
          sd::bench::persistent_input(*backend, Shape{1, size / 8, size / 8, 4}, 0.017f);
      auto cached = [&] {
        Tensor y = model->forward(sample, temb, kv);
        backend->synchronize();
      };
      auto plain = [&] {
        Tensor y = model->forward(sample, {500}, states);
        backend->synchronize();
      };
      const uint64_t flops_before = cpu_backend_stats(*backend).flops;
      cached();  // plan
      const double gflop = double(cpu_backend_stats(*backend).flops - flops_before) * 1e-9;
      plain();
      backend->arena().reserve(backend->arena().peak());
      backend->arena().reset_stats();
      const int runs = size == 512 ? 2 : 3;
      struct Part {
        const char* name;
        std::function<void()> fn;
        bool at_512;
      } parts[] = {{"precomputed K/V + time embedding", cached, true},
                   {"K/V + time embedding per call", plain, false}};
      for (const Part& p : parts) {
        if (size == 512 && !p.at_512) continue;
        sd::bench::Stats s = sd::bench::time_it(p.fn, runs, 0);
        std::printf(
            "unet %s %dx%d %s batch 1, %s: min %.0f ms, median %.0f ms (%d runs), "
            "%.0f GFLOP -> %.0f GFLOP/s at min\n",
            arch.c_str(), size, size, dtype.c_str(), p.name, s.min_ms, s.median_ms, s.runs, gflop,
            gflop / (s.min_ms * 1e-3));
        std::fflush(stdout);
      }
      // The attention kernels side by side: the fused kernel (the default) against oneDNN's
      // chunked matmuls it replaced, timed calls interleaved so both see the same machine.
      std::vector<double> fused_ms, onednn_ms;
      for (int r = 0; r < runs; ++r)
        for (const char* kernel : {"auto", "onednn"}) {
          cpu_set_attention_kernel(*backend, kernel);
          const sd::bench::Stats one = sd::bench::time_it(cached, 1, 0);
          (kernel[0] == 'a' ? fused_ms : onednn_ms).push_back(one.min_ms);
        }
      cpu_set_attention_kernel(*backend, "auto");
      const sd::bench::Stats f = sd::bench::stats_of(fused_ms);
      const sd::bench::Stats d = sd::bench::stats_of(onednn_ms);
      std::printf(
          "unet %s %dx%d %s batch 1, precomputed, attention fused vs oneDNN (interleaved): "
          "min %.0f / %.0f ms, median %.0f / %.0f ms -> %.2fx at min\n",
          arch.c_str(), size, size, dtype.c_str(), f.min_ms, d.min_ms, f.median_ms, d.median_ms,
          d.min_ms / f.min_ms);
      std::fflush(stdout);
      std::printf("arena: %.1f MiB reserved, %zu overflow allocations while timing\n",
                  double(backend->arena().capacity()) / (1 << 20),
                  backend->arena().overflow_count());
    }
  }
}

// Stream Batch feeds several rows to one UNet call: the cost per row at 256² for batch 1, 2, 4
// (K/V and time embedding precomputed; every row its own timestep), f32; GFLOP counted as above.
SD_BENCH("unet-batch") {
  BackendOptions opts;
  opts.dtype = "f32";
  auto backend = make_backend(opts);
  HashUNetWeights weights("hash-random SD 1.5 UNet weights");
  auto model = UNet::create(sd15_unet_config(), weights, *backend);
  std::printf("backend: %s\n", backend->description().c_str());
  for (int64_t batch : {1, 2, 4}) {
    Tensor states = sd::bench::persistent_input(*backend, Shape{batch, 77, 768}, 0.011f);
    UNetKVCache kv = model->precompute_kv(states);
    std::vector<float> steps;
    for (int64_t b = 0; b < batch; ++b) steps.push_back(999.f - 250.f * float(b));
    Tensor temb = model->time_embedding(steps, batch);
    Tensor sample = sd::bench::persistent_input(*backend, Shape{batch, 32, 32, 4}, 0.017f);
    auto run = [&] {
      Tensor y = model->forward(sample, temb, kv);
      backend->synchronize();
    };
    const uint64_t flops_before = cpu_backend_stats(*backend).flops;
    run();  // plan
    const double gflop_row =
        double(cpu_backend_stats(*backend).flops - flops_before) * 1e-9 / double(batch);
    backend->arena().reserve(backend->arena().peak());
    sd::bench::Stats s = sd::bench::time_it(run, 2, 0);
    std::printf(
        "unet sd1.5 256x256 f32 batch %lld: min %.0f ms (%.0f ms per row), median %.0f ms, "
        "%.0f GFLOP/s at min\n",
        (long long)batch, s.min_ms, s.min_ms / double(batch), s.median_ms,
        gflop_row * double(batch) / (s.min_ms * 1e-3));
    std::fflush(stdout);
  }
}
