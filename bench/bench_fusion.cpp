// Would fusing the transformer block's matrix products pay (issue 14, item 2)? At the UNet's
// shapes, today's path (the CPU backend: three Q/K/V linears; the feed-forward's first linear
// to [M, 2F] followed by the GEGLU kernel) against the fused forms, through oneDNN directly with
// weights packed in its preferred layout:
//   qkv    one [M, C] x [C, 3C] matmul instead of three [M, C] x [C, C];
//   geglu  h = x·W_h + b_h, then y = gelu(x·W_g + b_g) * h as one matmul with an erf-GELU and a
//          binary-multiply post-op: no [M, 2F] intermediate and no separate elementwise pass.
// Calls are interleaved (today, fused, today, ...) so both see the same machine; min / median
// of 7 after a warm-up. f32 (bf16 too where the CPU runs it natively).
#include <cstdio>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "bench.h"

namespace {

using namespace sd;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Onednn {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
};

dnnl::memory zeroed(const dnnl::memory::desc& d, const dnnl::engine& eng) {
  dnnl::memory m(d, eng);
  std::memset(m.get_data_handle(), 0, d.get_size());
  return m;
}

// A [M, K] x [K, N] (+ bias) matmul with packed weights and optional post-ops; `extra` binds
// the post-ops' inputs.
struct Matmul {
  dnnl::matmul prim;
  std::unordered_map<int, dnnl::memory> args;
  Matmul(Onednn& e, dt type, int64_t m, int64_t k, int64_t n, const dnnl::primitive_attr& attr,
         const dnnl::memory& src) {
    const dnnl::memory::desc b({1, n}, dt::f32, tag::ab), y({m, n}, type, tag::ab);
    dnnl::matmul::primitive_desc pd(
        dnnl::matmul::desc(src.get_desc(), dnnl::memory::desc({k, n}, type, tag::any), b, y), attr,
        e.eng);
    prim = dnnl::matmul(pd);
    args = {{DNNL_ARG_SRC, src},
            {DNNL_ARG_WEIGHTS, zeroed(pd.weights_desc(), e.eng)},
            {DNNL_ARG_BIAS, zeroed(b, e.eng)},
            {DNNL_ARG_DST, zeroed(y, e.eng)}};
  }
  void run(Onednn& e) { prim.execute(e.strm, args); }
  const dnnl::memory& dst() const { return args.at(DNNL_ARG_DST); }
};

// Alternating calls of `a` and `b`; prints both and what fusing saves.
void compare(Backend& be, const std::string& what, const std::function<void()>& a,
             const std::function<void()>& b) {
  a(), b();  // warm-up (primitive creation, weight packing), then no allocation while timed
  be.arena().reserve(be.arena().peak());
  std::vector<double> ta, tb;
  for (int r = 0; r < 7; ++r) {
    ta.push_back(bench::time_it(a, 1, 0).min_ms);
    tb.push_back(bench::time_it(b, 1, 0).min_ms);
  }
  const bench::Stats sa = bench::stats_of(ta), sb = bench::stats_of(tb);
  std::printf(
      "  %-40s today %7.2f / %7.2f ms, fused %7.2f / %7.2f ms (min / median): saves %5.2f ms "
      "(%4.1f%%) at median\n",
      what.c_str(), sa.min_ms, sa.median_ms, sb.min_ms, sb.median_ms, sa.median_ms - sb.median_ms,
      100.0 * (sa.median_ms - sb.median_ms) / sa.median_ms);
  std::fflush(stdout);
}

void bench_dtype(const std::string& dtype) {
  BackendOptions o;
  o.dtype = dtype;
  auto be = make_backend(o);
  std::printf("%s (%s)\n", dtype.c_str(), be->description().c_str());
  const DType cd = be->compute_dtype();
  const dt type = cd == DType::F32 ? dt::f32 : dt::bf16;
  Onednn e;
  struct Shape2 {
    int64_t m, c;
  };
  // Tokens and channels of SD 1.5's transformer stages: 512² (64², 32², 16²) and 256² (32²).
  for (const Shape2 s : {Shape2{4096, 320}, Shape2{1024, 640}, Shape2{256, 1280}}) {
    const int64_t m = s.m, c = s.c, f = 4 * c;
    Tensor x = be->empty(Shape{1, m, c}, cd);
    std::memset(x.data(), 0, x.nbytes());
    be->synchronize();
    const dnnl::memory src({{m, c}, type, tag::ab}, e.eng, x.data());
    const std::string at = std::to_string(m) + " tokens x " + std::to_string(c);

    // Q, K, V: three backend linears (no bias, as diffusers' attention) vs one.
    std::vector<Weight> w3;
    for (int i = 0; i < 3; ++i)
      w3.push_back(be->linear_weight(Tensor::host(Shape{c, c}, DType::F32)));
    Matmul qkv(e, type, m, c, 3 * c, {}, src);
    compare(
        *be, "q/k/v projections, " + at,
        [&] {
          for (const Weight& w : w3) be->linear(x, w, nullptr);
          be->synchronize();
        },
        [&] {
          qkv.run(e);
          e.strm.wait();
        });

    // GEGLU: linear to 2F + bias, then the GEGLU kernel, vs two matmuls, the second with
    // gelu and multiply post-ops.
    const Weight w_in = be->linear_weight(Tensor::host(Shape{2 * f, c}, DType::F32));
    const Weight b_in = be->vector(Tensor::host(Shape{2 * f}, DType::F32));
    Matmul hidden(e, type, m, c, f, {}, src);
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    ops.append_binary(dnnl::algorithm::binary_mul, hidden.dst().get_desc());
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    Matmul gate(e, type, m, c, f, attr, src);
    gate.args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1] = hidden.dst();
    compare(
        *be, "feed-forward in + GEGLU, " + at,
        [&] {
          be->geglu(be->linear(x, w_in, &b_in));
          be->synchronize();
        },
        [&] {
          hidden.run(e);
          gate.run(e);
          e.strm.wait();
        });
  }
}

}  // namespace

SD_BENCH("fusion") {
  for (const std::string& dtype : bench::cpu_dtypes()) bench_dtype(dtype);
}
