// int8 against f32 for the UNet's matrix products and 3x3 convolutions, through oneDNN directly:
// is an int8 weight mode (issue 14, item 4) worth building on this CPU? Weights are quantized
// per output channel (scale = max |w| / 127), activations per tensor and symmetrically, at run
// time (scale = max |x| / 127), as a dynamic-quantization compute mode would do; products
// accumulate in s32 and are scaled back to f32 in the primitive (output scales). Each row prints
//   f32      the f32 primitive (weights packed in oneDNN's preferred layout);
//   int8     the int8 primitive alone (activations already quantized);
//   +quant   int8 plus quantizing its f32 input (a max |x| pass and a scaling reorder to s8);
//   error    ||y_int8 - y_f32|| / ||y_f32|| with normally distributed activations and
//            uniform weights (one layer; errors compound over a UNet's ~100 layers).
// On CPUs without VNNI (AVX2), oneDNN multiplies int8 with vpmaddubsw/vpmaddwd (u8 x s8 pairs
// into s16, then s32); with AVX512-VNNI or AVX-VNNI one vpdpbusd does it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench.h"

namespace {

using namespace sd;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

struct Engine {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
};

// n values from `dist` (normal or uniform) seeded with `seed`.
template <class Distribution>
std::vector<float> random_values(size_t n, uint32_t seed, Distribution dist) {
  std::vector<float> v(n);
  std::mt19937 gen(seed);
  for (float& x : v) x = dist(gen);
  return v;
}

std::vector<float> normal_values(size_t n, uint32_t seed, float sigma) {
  return random_values(n, seed, std::normal_distribution<float>(0.f, sigma));
}

std::vector<float> uniform_values(size_t n, uint32_t seed, float scale) {
  return random_values(n, seed, std::uniform_real_distribution<float>(-scale, scale));
}

// Symmetric per-row scales of a [rows, cols] matrix and its s8 values in [-levels, levels].
std::vector<float> quantize_rows(const std::vector<float>& w, int64_t rows, int64_t cols,
                                 float levels, std::vector<int8_t>* q) {
  std::vector<float> scale(size_t(rows), 1.f);
  q->resize(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0;
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(w[size_t(r * cols + c)]));
    scale[size_t(r)] = m > 0 ? m / levels : 1.f;
    for (int64_t c = 0; c < cols; ++c)
      (*q)[size_t(r * cols + c)] = int8_t(
          std::lround(std::clamp(w[size_t(r * cols + c)] / scale[size_t(r)], -levels, levels)));
  }
  return scale;
}

float max_abs(const float* x, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

double rel_error(const float* a, const float* b, size_t n) {
  double d = 0, r = 0;
  for (size_t i = 0; i < n; ++i) {
    d += double(a[i] - b[i]) * double(a[i] - b[i]);
    r += double(b[i]) * double(b[i]);
  }
  return std::sqrt(d / std::max(r, 1e-30));
}

dnnl::memory filled(const dnnl::memory::desc& d, Engine& e, const void* data) {
  dnnl::memory m(d, e.eng);
  std::memcpy(m.get_data_handle(), data, d.get_size());
  return m;
}

// `from` reordered into a new memory of desc `to` (a layout change, or back to a plain one).
dnnl::memory reordered(Engine& e, dnnl::memory& from, const dnnl::memory::desc& to) {
  dnnl::memory out(to, e.eng);
  dnnl::reorder(from, out).execute(e.strm, from, out);
  e.strm.wait();
  return out;
}

struct Row {
  std::string what;
  double gflop = 0;
  bench::Stats f32, int8, with_quant;
  double error = 0, error7 = 0;  // with 8-bit and with 7-bit weights
  std::string impl_f32, impl_int8;
};

void print_row(const Row& r) {
  auto rate = [&](const bench::Stats& s) { return r.gflop / (s.min_ms * 1e-3); };
  std::printf(
      "  %-30s f32 %8.2f / %8.2f ms (%5.1f GFLOP/s)  int8 %8.2f / %8.2f ms (%5.1f)  "
      "+quant %8.2f / %8.2f ms  int8/f32 %.2fx, +quant %.2fx  error %.2e, 7-bit weights %.2e\n",
      r.what.c_str(), r.f32.min_ms, r.f32.median_ms, rate(r.f32), r.int8.min_ms, r.int8.median_ms,
      rate(r.int8), r.with_quant.min_ms, r.with_quant.median_ms, r.f32.min_ms / r.int8.min_ms,
      r.f32.min_ms / r.with_quant.min_ms, r.error, r.error7);
  std::printf("  %-30s [f32: %s; int8: %s]\n", "", r.impl_f32.c_str(), r.impl_int8.c_str());
}

// Times quantizing `x` (f32, plain) into `q` (s8, desc of q): max |x|, then a scaling reorder.
void quantize_activations(Engine& e, dnnl::memory& x, dnnl::memory& q, size_t n) {
  const float m = max_abs(static_cast<const float*>(x.get_data_handle()), n);
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {m > 0 ? 127.f / m : 1.f});
  dnnl::reorder(dnnl::reorder::primitive_desc(x, q, attr)).execute(e.strm, x, q);
  e.strm.wait();
}

// Runs the int8 primitive once (its output is compared), timing it with and without quantizing
// its input when `timed`.
void run_int8(Engine& e, Row& r, bool timed, const std::function<void()>& run8, dnnl::memory& x,
              dnnl::memory& xq, size_t n) {
  if (!timed) {
    run8();
    return;
  }
  r.int8 = bench::time_it(run8);
  r.with_quant = bench::time_it([&] {
    quantize_activations(e, x, xq, n);
    run8();
  });
}

// y[M, N] = x[M, K] · w[N, K]ᵀ.
Row matmul_row(Engine& e, int64_t M, int64_t K, int64_t N) {
  Row r;
  r.what = "matmul " + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
  r.gflop = 2.0 * double(M) * double(K) * double(N) * 1e-9;
  const std::vector<float> x = normal_values(size_t(M * K), 1, 1.f);
  const std::vector<float> w = uniform_values(size_t(N * K), 2, 1.f / std::sqrt(float(K)));
  const dnnl::memory::desc x_f32({M, K}, dt::f32, tag::ab), y_f32({M, N}, dt::f32, tag::ab);
  // The weights as the logical [K, N] matrix over a [N, K] array (tag ba).
  const dnnl::memory::desc w_plain({K, N}, dt::f32, tag::ba);
  dnnl::memory mx = filled(x_f32, e, x.data()), mw = filled(w_plain, e, w.data());
  dnnl::memory my32(y_f32, e.eng), my8(y_f32, e.eng);

  // f32
  dnnl::matmul::primitive_desc pd32(
      dnnl::matmul::desc(x_f32, dnnl::memory::desc({K, N}, dt::f32, tag::any), y_f32), e.eng);
  dnnl::memory mw32 = reordered(e, mw, pd32.weights_desc());
  dnnl::matmul mm32(pd32);
  r.f32 = bench::time_it([&] {
    mm32.execute(e.strm, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw32}, {DNNL_ARG_DST, my32}});
    e.strm.wait();
  });
  r.impl_f32 = pd32.impl_info_str();

  // int8: s8 activations, s8 weights per output channel, f32 output.
  // Weights in 8 bits, then in 7 (without VNNI, oneDNN multiplies u8 x s8 pairs with
  // vpmaddubsw, whose s16 sums saturate: 7-bit weights are the usual way around it).
  for (const float levels : {127.f, 63.f}) {
    std::vector<int8_t> wq;
    const std::vector<float> w_scale = quantize_rows(w, N, K, levels, &wq);
    const float x_scale = max_abs(x.data(), x.size()) / 127.f;
    std::vector<float> out_scale(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) out_scale[size_t(n)] = x_scale * w_scale[size_t(n)];
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, out_scale);
    const dnnl::memory::desc x_s8({M, K}, dt::s8, tag::ab);
    dnnl::matmul::primitive_desc pd8(
        dnnl::matmul::desc(x_s8, dnnl::memory::desc({K, N}, dt::s8, tag::any), y_f32), attr, e.eng);
    dnnl::memory mwq = filled(dnnl::memory::desc({K, N}, dt::s8, tag::ba), e, wq.data());
    dnnl::memory mw8 = reordered(e, mwq, pd8.weights_desc());
    dnnl::memory mxq(x_s8, e.eng);
    quantize_activations(e, mx, mxq, x.size());
    dnnl::matmul mm8(pd8);
    auto run8 = [&] {
      mm8.execute(e.strm, {{DNNL_ARG_SRC, mxq}, {DNNL_ARG_WEIGHTS, mw8}, {DNNL_ARG_DST, my8}});
      e.strm.wait();
    };
    run_int8(e, r, levels == 127.f, run8, mx, mxq, x.size());
    r.impl_int8 = pd8.impl_info_str();
    (levels == 127.f ? r.error : r.error7) =
        rel_error(static_cast<const float*>(my8.get_data_handle()),
                  static_cast<const float*>(my32.get_data_handle()), size_t(M * N));
  }
  return r;
}

// 3x3 convolution c -> c at hw x hw, batch 1, padding 1, with bias; activations in the layout
// oneDNN prefers for each type (reorders to and from it are not timed).
Row conv_row(Engine& e, int64_t c, int64_t hw) {
  Row r;
  r.what = "conv3x3 " + std::to_string(c) + "->" + std::to_string(c) + " at " + std::to_string(hw) +
           "^2";
  r.gflop = 2.0 * double(hw * hw) * double(c * c * 9) * 1e-9;
  const std::vector<float> x = normal_values(size_t(c * hw * hw), 3, 1.f);
  const std::vector<float> w = uniform_values(size_t(c * c * 9), 4, 1.f / std::sqrt(9.f * c));
  const std::vector<float> b = uniform_values(size_t(c), 5, 0.1f);
  const dims src_dims{1, c, hw, hw}, w_dims{c, c, 3, 3};
  dnnl::memory mx = filled({src_dims, dt::f32, tag::nhwc}, e, x.data());
  dnnl::memory mw = filled({w_dims, dt::f32, tag::oihw}, e, w.data());
  dnnl::memory mb = filled({{c}, dt::f32, tag::a}, e, b.data());
  auto conv_pd = [&](dt src, dt wei, const dnnl::primitive_attr& attr) {
    return dnnl::convolution_forward::primitive_desc(
        dnnl::convolution_forward::desc(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
            {src_dims, src, tag::any}, {w_dims, wei, tag::any}, {{c}, dt::f32, tag::a},
            {src_dims, dt::f32, tag::any}, {1, 1}, {1, 1}, {1, 1}),
        attr, e.eng);
  };

  // f32
  auto pd32 = conv_pd(dt::f32, dt::f32, {});
  dnnl::memory sx = reordered(e, mx, pd32.src_desc()), sw = reordered(e, mw, pd32.weights_desc());
  dnnl::memory y32(pd32.dst_desc(), e.eng);
  dnnl::convolution_forward c32(pd32);
  r.f32 = bench::time_it([&] {
    c32.execute(
        e.strm,
        {{DNNL_ARG_SRC, sx}, {DNNL_ARG_WEIGHTS, sw}, {DNNL_ARG_BIAS, mb}, {DNNL_ARG_DST, y32}});
    e.strm.wait();
  });
  r.impl_f32 = pd32.impl_info_str();

  // int8: weights per output channel, the bias in f32.
  // Weights in 8 bits, then in 7 (without VNNI, oneDNN multiplies u8 x s8 pairs with
  // vpmaddubsw, whose s16 sums saturate: 7-bit weights are the usual way around it).
  for (const float levels : {127.f, 63.f}) {
    std::vector<int8_t> wq;
    const std::vector<float> w_scale = quantize_rows(w, c, c * 9, levels, &wq);
    const float x_scale = max_abs(x.data(), x.size()) / 127.f;
    std::vector<float> out_scale(static_cast<size_t>(c));
    for (int64_t o = 0; o < c; ++o) out_scale[size_t(o)] = x_scale * w_scale[size_t(o)];
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, out_scale);
    // oneDNN 2.x adds an int8 convolution's bias to the s32 sums before the output scales: give
    // it in that domain.
    std::vector<float> bias_q(b.size());
    for (size_t o = 0; o < b.size(); ++o) bias_q[o] = b[o] / out_scale[o];
    dnnl::memory mbq = filled({{c}, dt::f32, tag::a}, e, bias_q.data());
    auto pd8 = conv_pd(dt::s8, dt::s8, attr);
    dnnl::memory mwq = filled({w_dims, dt::s8, tag::oihw}, e, wq.data());
    dnnl::memory sw8 = reordered(e, mwq, pd8.weights_desc());
    dnnl::memory sx8(pd8.src_desc(), e.eng), y8(pd8.dst_desc(), e.eng);
    quantize_activations(e, mx, sx8, x.size());
    dnnl::convolution_forward c8(pd8);
    auto run8 = [&] {
      c8.execute(
          e.strm,
          {{DNNL_ARG_SRC, sx8}, {DNNL_ARG_WEIGHTS, sw8}, {DNNL_ARG_BIAS, mbq}, {DNNL_ARG_DST, y8}});
      e.strm.wait();
    };
    run_int8(e, r, levels == 127.f, run8, mx, sx8, x.size());
    r.impl_int8 = pd8.impl_info_str();
    // Both outputs back in NHWC f32 to compare.
    const dnnl::memory::desc plain(src_dims, dt::f32, tag::nhwc);
    dnnl::memory p32 = reordered(e, y32, plain), p8 = reordered(e, y8, plain);
    (levels == 127.f ? r.error : r.error7) =
        rel_error(static_cast<const float*>(p8.get_data_handle()),
                  static_cast<const float*>(p32.get_data_handle()), x.size());
  }
  return r;
}

}  // namespace

SD_BENCH("int8") {
  Engine e;
  std::printf(
      "oneDNN f32 vs int8 (s8 x s8 -> f32, weights per output channel, activations per "
      "tensor), min / median of 5:\n");
  // The UNet's shapes at 512²: level-1 feed-forward in and out, attention projections at level
  // 1 and 2, the 77-token cross-attention K/V; convolutions at levels 1 and 3.
  for (const auto& [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{4096, 320, 2560},
                                {4096, 1280, 320},
                                {4096, 320, 320},
                                {1024, 640, 640},
                                {77, 768, 320}})
    print_row(matmul_row(e, m, k, n));
  print_row(conv_row(e, 320, 64));
  print_row(conv_row(e, 1280, 16));
}
