// CPU kernel throughput: the UNet's dominant convolutions and matrix products through the CPU
// backend, as GFLOP/s and as a share of the best rate measured in the same run (square oneDNN
// matmuls of several sizes, measured before and after the kernels, and the kernels themselves:
// a 3x3 convolution can beat a square matmul, so no single matmul is called a ceiling);
// attention at 4096 tokens; and oneDNN's conv3x3 320→320 at 64² in NCHW, NHWC and the layout
// oneDNN prefers (format_tag::any: nChw8c on AVX2), the measurement behind the engine's
// channels-last layout and the CPU backend's reorders around convolutions.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "bench.h"

namespace {

using namespace sd;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

Tensor random_host(const Shape& s, uint32_t seed, float scale = 1.f) {
  Tensor t = Tensor::host(s, DType::F32);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = dist(gen);
  return t;
}

// A persistent (non-arena) device copy of a host tensor, in the compute dtype.
Tensor persistent(Backend& be, const Tensor& host) {
  Tensor t = be.empty(host.shape(), be.compute_dtype());
  be.copy_from_host(host, t);
  return t;
}

// Times fn after one untimed call and an arena reserve (so timed calls allocate nothing).
bench::Stats time_planned(Backend& be, const std::function<void()>& fn, int runs) {
  fn();
  be.synchronize();
  be.arena().reserve(be.arena().peak());
  return bench::time_it(
      [&] {
        fn();
        be.synchronize();
      },
      runs, 1);
}

struct Result {
  std::string what;
  double gflop;
  bench::Stats stats;
  std::string impl;
};

void print_line(const char* what, double gflop, const bench::Stats& s, double best,
                const std::string& impl) {
  const double rate = gflop / (s.min_ms * 1e-3);
  std::printf("  %-34s %8.2f ms (median %8.2f)  %7.1f GFLOP/s", what, s.min_ms, s.median_ms, rate);
  if (best > 0) std::printf("  %5.1f%% of best", 100.0 * rate / best);
  if (!impl.empty()) std::printf("  [%s]", impl.c_str());
  std::printf("\n");
}

// GFLOP/s of a square n×n×n oneDNN matmul with pre-packed weights.
double matmul_rate(dt type, int64_t n) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc a({n, n}, type, tag::ab), b_any({n, n}, type, tag::any);
  const dnnl::memory::desc c({n, n}, type, tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b_any, c), eng);
  dnnl::matmul mm(pd);
  dnnl::memory ma(a, eng), mb(pd.weights_desc(), eng), mc(c, eng);
  std::memset(ma.get_data_handle(), 0, a.get_size());
  std::memset(mb.get_data_handle(), 0, pd.weights_desc().get_size());
  const bench::Stats s = bench::time_it(
      [&] {
        mm.execute(strm, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
        strm.wait();
      },
      5, 1);
  const double gflop = 2.0 * double(n) * double(n) * double(n) * 1e-9;
  print_line(("matmul " + std::to_string(n) + "^3").c_str(), gflop, s, 0, pd.impl_info_str());
  return gflop / (s.min_ms * 1e-3);
}

// oneDNN conv3x3 c→c at hw² (batch 1) with the activations in `layout`; returns GFLOP/s.
double raw_conv(dt type, tag layout, int64_t c, int64_t hw) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc src({1, c, hw, hw}, type, layout), dst({1, c, hw, hw}, type, layout);
  const dnnl::memory::desc w({c, c, 3, 3}, type, tag::any), b({c}, dt::f32, tag::a);
  dnnl::convolution_forward::primitive_desc pd(
      dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                      dnnl::algorithm::convolution_direct, src, w, b, dst, {1, 1},
                                      {1, 1}, {1, 1}),
      eng);
  dnnl::convolution_forward conv(pd);
  dnnl::memory ms(pd.src_desc(), eng), mw(pd.weights_desc(), eng), mb(b, eng);
  dnnl::memory md(pd.dst_desc(), eng);
  for (auto* m : {&ms, &mw, &mb}) std::memset(m->get_data_handle(), 0, m->get_desc().get_size());
  const bench::Stats s = bench::time_it(
      [&] {
        conv.execute(
            strm,
            {{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, md}});
        strm.wait();
      },
      5, 1);
  const double gflop = 2.0 * double(hw * hw) * double(c * c * 9) * 1e-9;
  const std::string what =
      std::string("conv3x3 320->320 64^2 ") + (layout == tag::nhwc   ? "NHWC"
                                               : layout == tag::nchw ? "NCHW"
                                                                     : "oneDNN's choice");
  print_line(what.c_str(), gflop, s, 0, pd.impl_info_str());
  return gflop / (s.min_ms * 1e-3);
}

void bench_dtype(DType dtype) {
  BackendOptions o;
  o.dtype = dtype_name(dtype);
  auto be = make_backend(o);
  std::printf("%s (%s)\n", dtype_name(dtype), be->description().c_str());
  const dt type = dtype == DType::F32 ? dt::f32 : dt::bf16;
  double best_matmul = 0;
  for (int64_t n : {1024, 2048, 3072}) best_matmul = std::max(best_matmul, matmul_rate(type, n));
  std::vector<Result> results;

  struct Conv {
    const char* name;
    int64_t hw, c;
    bool fused;  // + SiLU + residual post-ops
  };
  for (const Conv& c : {Conv{"conv3x3 320->320 64^2", 64, 320, false},
                        Conv{"conv3x3 320->320 64^2 +SiLU+resid", 64, 320, true},
                        Conv{"conv3x3 64->64 512^2", 512, 64, false}}) {
    const Tensor x = persistent(*be, random_host({1, c.hw, c.hw, c.c}, 1));
    const Weight w = be->conv_weight(random_host({c.c, c.c, 3, 3}, 2, 0.05f));
    const Weight b = be->vector(random_host({c.c}, 3));
    const bench::Stats s = time_planned(
        *be,
        [&] {
          be->conv2d(x, w, &b, {1, 1}, c.fused ? Act::SiLU : Act::None, c.fused ? &x : nullptr);
        },
        5);
    results.push_back({c.name, 2.0 * double(c.hw * c.hw) * double(c.c * c.c * 9) * 1e-9, s,
                       cpu_backend_stats(*be).last_impl});
  }
  struct Mm {
    int64_t m, k, n;
  };
  for (const Mm& mm : {Mm{4096, 320, 1280}, Mm{4096, 1280, 320}}) {
    const Tensor x = persistent(*be, random_host({1, mm.m, mm.k}, 4));
    const Weight w = be->linear_weight(random_host({mm.n, mm.k}, 5, 0.05f));
    const Weight b = be->vector(random_host({mm.n}, 6));
    const bench::Stats s = time_planned(
        *be, [&] { be->linear(x, w, &b); }, 5);
    const std::string name = "linear " + std::to_string(mm.m) + "x" + std::to_string(mm.k) + "x" +
                             std::to_string(mm.n) + " +bias";
    results.push_back(
        {name, 2.0 * double(mm.m * mm.k * mm.n) * 1e-9, s, cpu_backend_stats(*be).last_impl});
  }
  {  // SD 1.5's first-level self-attention at 512²: 4096 tokens, 8 heads of 40.
    const Tensor q = persistent(*be, random_host({1, 4096, 320}, 7));
    const Tensor k = persistent(*be, random_host({1, 4096, 320}, 8));
    const bench::Stats s = time_planned(
        *be, [&] { be->attention(q, k, k, 8); }, 3);
    // The kernel is ours (fused), not a oneDNN primitive: name it from the backend's line.
    const std::string desc = be->description();
    const size_t at = desc.find("attention ");
    results.push_back({"attention 4096x4096, 8x40", 4.0 * 4096.0 * 4096.0 * 320.0 * 1e-9, s,
                       at == std::string::npos ? "" : desc.substr(at)});
  }
  best_matmul = std::max(best_matmul, matmul_rate(type, 2048));
  double best = best_matmul;
  std::string best_what = "a square matmul";
  for (const Result& r : results)
    if (r.gflop / (r.stats.min_ms * 1e-3) > best) {
      best = r.gflop / (r.stats.min_ms * 1e-3);
      best_what = r.what;
    }
  std::printf("  best rate in this run: %.1f GFLOP/s (%s); best square matmul %.1f GFLOP/s\n", best,
              best_what.c_str(), best_matmul);
  for (const Result& r : results) print_line(r.what.c_str(), r.gflop, r.stats, best, r.impl);
  std::printf("  NCHW vs NHWC vs oneDNN's preferred layout (oneDNN directly, weights packed):\n");
  const double nchw = raw_conv(type, tag::nchw, 320, 64);
  const double nhwc = raw_conv(type, tag::nhwc, 320, 64);
  const double any = raw_conv(type, tag::any, 320, 64);
  std::printf("  NHWC / NCHW = %.2fx, preferred / NHWC = %.2fx\n", nhwc / nchw, any / nhwc);
}

}  // namespace

SD_BENCH("kernels") {
  bench_dtype(DType::F32);
  if (cpu_has_native_bf16()) {
    bench_dtype(DType::BF16);
  } else {
    std::printf("bf16: skipped, this CPU does not run bf16 natively (needs AVX512-BF16)\n");
  }
}
