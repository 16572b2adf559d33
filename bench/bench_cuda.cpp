// GPU benchmarks: cuBLASLt matrix products through the CUDA backend's linear() (UNet shapes and
// an 8192³ ceiling, bf16 and f32 with TF32 off) and the bandwidth of our own elementwise,
// normalisation and data-movement kernels. Timed with CUDA events (median of the runs).
#include <cstdint>
#include <cstdio>
#include <string>

#include "backend/backend.h"
#include "bench.h"
#ifdef SD_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace {

#ifdef SD_WITH_CUDA
using namespace sd;

// Uniform values in [lo, hi) from a fixed-seed xorshift generator (fast for 64M elements).
Tensor random_host(const Shape& shape, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::host(shape, DType::F32);
  float* p = static_cast<float*>(t.data());
  uint32_t s = seed * 2654435761u + 1u;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    p[i] = lo + (hi - lo) * float(s >> 8) * (1.f / 16777216.f);
  }
  return t;
}

std::unique_ptr<Backend> cuda_backend(const char* dtype) {
  BackendOptions o;
  o.device = "cuda";
  o.dtype = dtype;
  return make_backend(o);
}

// A persistent (non-arena) device copy of a host tensor in the compute dtype.
Tensor persistent(Backend& be, const Tensor& host) {
  Tensor t = be.empty(host.shape(), be.compute_dtype());
  be.copy_from_host(host, t);
  be.synchronize();
  return t;
}

void bench_matmul(const char* dtype, int64_t m, int64_t n, int64_t k, int runs) {
  auto be = cuda_backend(dtype);
  const float r = 1.f / float(k);
  const Tensor x = persistent(*be, random_host({m, k}, 1));
  const Weight w = be->linear_weight(random_host({n, k}, 2, -r, r));
  be->arena().reserve(size_t(m * n) * dtype_size(be->compute_dtype()) + 4096);
  const double ms = cuda_time_ms(
      *be, [&] { be->linear(x, w, nullptr); }, runs, 3);
  std::printf("  matmul %-4s M=%-5lld N=%-5lld K=%-5lld %9.3f ms %9.0f GFLOP/s\n", dtype,
              (long long)m, (long long)n, (long long)k, ms, 2.0 * m * n * k / (ms * 1e6));
}

// bytes: the fewest bytes the kernel must move (each input read once, the output written once).
void report_bw(const char* what, const char* dtype, double ms, double bytes) {
  std::printf("  %-34s %-4s %9.3f ms %9.1f GB/s\n", what, dtype, ms, bytes / (ms * 1e6));
}

void bench_memory_kernels(const char* dtype) {
  auto be = cuda_backend(dtype);
  const double es = double(dtype_size(be->compute_dtype()));
  be->arena().reserve(size_t(1) << 30);
  const int runs = 20;
  {
    const int64_t n = int64_t(64) << 20;
    const Tensor x = persistent(*be, random_host({n}, 3, -4.f, 4.f));
    const Tensor y = persistent(*be, random_host({n}, 4, 0.5f, 2.f));
    report_bw("activate silu 64M", dtype,
              cuda_time_ms(
                  *be, [&] { be->activate(x, Act::SiLU); }, runs),
              2.0 * n * es);
    report_bw("activate gelu(erf) 64M", dtype,
              cuda_time_ms(
                  *be, [&] { be->activate(x, Act::GELU); }, runs),
              2.0 * n * es);
    report_bw("binary add 64M", dtype,
              cuda_time_ms(
                  *be, [&] { be->binary(BinaryOp::Add, x, y); }, runs),
              3.0 * n * es);
    report_bw("scale 64M", dtype,
              cuda_time_ms(
                  *be, [&] { be->scale(x, 2.f, 1.f); }, runs),
              2.0 * n * es);
  }
  {
    // UNet-like: [2, 64, 64, 320] activations, a per-channel (time embedding) broadcast.
    const Tensor x = persistent(*be, random_host({2, 64, 64, 320}, 5));
    const Tensor t = persistent(*be, random_host({2, 1, 1, 320}, 6));
    const double n = double(x.numel());
    report_bw("binary add bcast [2,64,64,320]", dtype,
              cuda_time_ms(
                  *be, [&] { be->binary(BinaryOp::Add, x, t); }, runs),
              2.0 * n * es);
    const Weight g = be->vector(random_host({320}, 7)), b = be->vector(random_host({320}, 8));
    report_bw("group_norm+silu [2,64,64,320]", dtype,
              cuda_time_ms(
                  *be, [&] { be->group_norm(x, 32, g, b, 1e-5f, Act::SiLU); }, runs),
              2.0 * n * es);
    report_bw("upsample2x [2,64,64,320]", dtype,
              cuda_time_ms(
                  *be, [&] { be->upsample_nearest2x(x); }, runs),
              5.0 * n * es);
    report_bw("concat [2,64,64,320]x2", dtype,
              cuda_time_ms(
                  *be, [&] { be->concat_channels(x, x); }, runs),
              4.0 * n * es);
    const Tensor tokens = x.reshape({2, 4096, 320});
    report_bw("layer_norm [2,4096,320]", dtype,
              cuda_time_ms(
                  *be, [&] { be->layer_norm(tokens, g, b, 1e-5f); }, runs),
              2.0 * n * es);
  }
  {
    // VAE-decoder scale group norm: [1, 512, 512, 128].
    const Tensor x = persistent(*be, random_host({1, 512, 512, 128}, 9));
    const Weight g = be->vector(random_host({128}, 10)), b = be->vector(random_host({128}, 11));
    report_bw("group_norm+silu [1,512,512,128]", dtype,
              cuda_time_ms(
                  *be, [&] { be->group_norm(x, 32, g, b, 1e-6f, Act::SiLU); }, runs),
              2.0 * double(x.numel()) * es);
    const Tensor f = persistent(*be, random_host({4096, 2560}, 12));
    report_bw("geglu [4096,2560]", dtype,
              cuda_time_ms(
                  *be, [&] { be->geglu(f); }, runs),
              1.5 * double(f.numel()) * es);
    const Tensor s = persistent(*be, random_host({16, 4096, 77}, 13));
    report_bw("softmax [16*4096,77]", dtype,
              cuda_time_ms(
                  *be, [&] { be->softmax(s, 0.125f); }, runs),
              2.0 * double(s.numel()) * es);
    const Tensor s2 = persistent(*be, random_host({4, 4096, 4096}, 14));
    report_bw("softmax [4*4096,4096]", dtype,
              cuda_time_ms(
                  *be, [&] { be->softmax(s2, 0.125f); }, runs),
              2.0 * double(s2.numel()) * es);
  }
}
#endif

SD_BENCH("cuda") {
#ifndef SD_WITH_CUDA
  std::printf("skipped: built without CUDA\n");
#else
  if (!sd::cuda_available()) {
    std::printf("skipped: no GPU\n");
    return;
  }
  std::printf("gpu: %s\n", sd::cuda_device_info().c_str());
  std::printf("cuBLASLt through linear() (f32 accumulate; f32 is plain f32, TF32 off):\n");
  for (const char* dtype : {"bf16", "f32"}) {
    bench_matmul(dtype, 4096, 320, 1280, 50);
    bench_matmul(dtype, 4096, 1280, 320, 50);
    bench_matmul(dtype, 8192, 8192, 8192, dtype[0] == 'b' ? 20 : 5);
  }
  std::printf("memory-bound kernels (GB/s = fewest bytes moved / time):\n");
  for (const char* dtype : {"bf16", "f32"}) bench_memory_kernels(dtype);
#endif
}

}  // namespace
