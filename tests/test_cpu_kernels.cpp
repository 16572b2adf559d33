// The CPU backend's kernels against their reference twins (backend/cpu/reference_kernels.h) on
// random shapes, including awkward sizes. Tolerances (‖ours − ref‖ / ‖ref‖): f32 1e-4 for
// products (conv, linear, attention), 1e-5 for the elementwise and norm kernels; bf16 2e-2 for
// products, 5e-3 for the rest (bf16 rounding of the output alone is up to 2^-9 per element).
// bf16 convolutions and matrix products need AVX512-BF16 and are skipped on other CPUs; the
// bf16 variants of the other kernels run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/math_approx.h"
#include "backend/cpu/reference_kernels.h"

namespace sd {

// gtest prints DType parameters by name (found by argument-dependent lookup).
void PrintTo(DType d, std::ostream* os) {
  *os << dtype_name(d);
}

namespace {

Tensor random_host(const Shape& s, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::host(s, DType::F32);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = dist(gen);
  return t;
}

// The values a tensor of `dtype` can hold (f32 host), so the reference sees the same inputs.
Tensor rounded(const Tensor& t, DType dtype) {
  return t.to_host_dtype(dtype).to_host_dtype(DType::F32);
}

std::unique_ptr<Backend> f32_backend() {
  BackendOptions o;
  o.dtype = "f32";
  return make_backend(o);
}

// Backend for the oneDNN kernels in `dt`, or null when this CPU cannot run it.
std::unique_ptr<Backend> dnnl_backend(DType dt) {
  if (dt == DType::BF16 && !cpu_has_native_bf16()) return nullptr;
  BackendOptions o;
  o.dtype = dtype_name(dt);
  return make_backend(o);
}

Tensor to_device(Backend& be, const Tensor& host, DType dt) {
  Tensor t = be.alloc(host.shape(), dt);
  be.copy_from_host(host, t);
  return t;
}

double product_tol(DType dt) {
  return dt == DType::F32 ? 1e-4 : 2e-2;
}
double elementwise_tol(DType dt) {
  return dt == DType::F32 ? 1e-5 : 5e-3;
}

class CpuKernelsDnnl : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    be_ = dnnl_backend(GetParam());
    if (!be_) GTEST_SKIP() << "bf16 convolution/matmul needs AVX512-BF16; this CPU lacks it";
  }
  DType dt() const { return GetParam(); }
  std::unique_ptr<Backend> be_;
};

class CpuKernelsOwn : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override { be_ = f32_backend(); }
  DType dt() const { return GetParam(); }
  Tensor input(const Shape& s, uint32_t seed, float lo = -1.f, float hi = 1.f) {
    return rounded(random_host(s, seed, lo, hi), dt());
  }
  Tensor dev(const Tensor& host) { return to_device(*be_, host, dt()); }
  std::unique_ptr<Backend> be_;
};

std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info) {
  return dtype_name(info.param);
}

struct ConvCase {
  int64_t n, h, w, cin, cout, k;
  int stride, pad;
  bool bias;
  Act act;
  bool residual;
};

TEST_P(CpuKernelsDnnl, Conv2dMatchesReference) {
  const ConvCase cases[] = {
      {1, 5, 7, 3, 4, 3, 1, 1, true, Act::None, false},
      {2, 8, 8, 16, 32, 1, 1, 0, true, Act::SiLU, true},
      {1, 9, 6, 17, 5, 3, 2, 1, false, Act::ReLU, false},
      {1, 1, 1, 1, 1, 1, 1, 0, false, Act::None, false},
      {1, 12, 11, 8, 20, 3, 2, 0, true, Act::GELU, false},
      {1, 10, 10, 33, 19, 5, 1, 2, false, Act::Tanh, true},
      {1, 16, 16, 20, 40, 4, 2, 1, true, Act::GELUTanh, false},
      {3, 6, 6, 4, 8, 3, 1, 1, true, Act::SiLU, true},
  };
  uint32_t seed = 1;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "x [" << c.n << "," << c.h << "," << c.w << "," << c.cin
                                    << "] cout " << c.cout << " k " << c.k << " s " << c.stride
                                    << " p " << c.pad << " act " << act_name(c.act));
    const Conv2dParams p{c.stride, c.pad};
    Tensor x = rounded(random_host({c.n, c.h, c.w, c.cin}, seed++), dt());
    Tensor w = rounded(random_host({c.cout, c.cin, c.k, c.k}, seed++, -0.3f, 0.3f), dt());
    Tensor b = random_host({c.cout}, seed++);
    const int64_t ho = (c.h + 2 * c.pad - c.k) / c.stride + 1,
                  wo = (c.w + 2 * c.pad - c.k) / c.stride + 1;
    Tensor r = rounded(random_host({c.n, ho, wo, c.cout}, seed++), dt());
    Tensor expect = ref::conv2d(x, w, c.bias ? &b : nullptr, p, c.act, c.residual ? &r : nullptr);

    Weight wd = be_->conv_weight(w), bd = be_->vector(b);
    Tensor xd = to_device(*be_, x, dt()), rd = to_device(*be_, r, dt());
    Tensor y = be_->conv2d(xd, wd, c.bias ? &bd : nullptr, p, c.act, c.residual ? &rd : nullptr);
    EXPECT_LE(ref::rel_error(be_->download(y), expect), product_tol(dt()));

    // A second identical call reuses the primitive and the packed weight.
    const CpuBackendStats before = cpu_backend_stats(*be_);
    Tensor y2 = be_->conv2d(xd, wd, c.bias ? &bd : nullptr, p, c.act, c.residual ? &rd : nullptr);
    const CpuBackendStats after = cpu_backend_stats(*be_);
    EXPECT_EQ(after.primitives_created, before.primitives_created);
    EXPECT_EQ(after.weight_reorders, before.weight_reorders);
    EXPECT_EQ(ref::rel_error(be_->download(y2), be_->download(y)), 0.0);
  }
}

TEST_P(CpuKernelsDnnl, LinearMatchesReference) {
  struct Case {
    Shape x;
    int64_t out;
    bool bias;
    Act act;
    bool residual;
  };
  const Case cases[] = {
      {{1, 1}, 1, false, Act::None, false},     {{3, 7, 17}, 33, true, Act::GELU, false},
      {{2, 77, 64}, 48, true, Act::None, true}, {{5, 16}, 16, false, Act::SiLU, true},
      {{130, 40}, 70, true, Act::ReLU, false},  {{1, 9, 31}, 5, true, Act::GELUTanh, true},
  };
  uint32_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "x " << c.x.str() << " out " << c.out << " act " << act_name(c.act));
    Tensor x = rounded(random_host(c.x, seed++), dt());
    Tensor w = rounded(random_host({c.out, c.x[-1]}, seed++, -0.3f, 0.3f), dt());
    Tensor b = random_host({c.out}, seed++);
    Shape ys = c.x;
    ys[-1] = c.out;
    Tensor r = rounded(random_host(ys, seed++), dt());
    Tensor expect = ref::linear(x, w, c.bias ? &b : nullptr, c.act, c.residual ? &r : nullptr);
    Weight wd = be_->linear_weight(w), bd = be_->vector(b);
    Tensor rd = to_device(*be_, r, dt());
    Tensor y = be_->linear(to_device(*be_, x, dt()), wd, c.bias ? &bd : nullptr, c.act,
                           c.residual ? &rd : nullptr);
    ASSERT_EQ(y.shape(), ys);
    EXPECT_LE(ref::rel_error(be_->download(y), expect), product_tol(dt()));
  }
}

TEST_P(CpuKernelsDnnl, AttentionMatchesReference) {
  struct Case {
    int64_t b, lq, lk, heads, d;
    bool causal;
    int64_t chunk;  // 0 = automatic
  };
  const Case cases[] = {
      {1, 7, 7, 1, 8, false, 0},  {2, 13, 29, 3, 5, false, 0},   {1, 77, 77, 4, 16, true, 0},
      {2, 20, 20, 2, 8, true, 0}, {1, 50, 31, 2, 40, false, 16}, {2, 50, 50, 3, 8, true, 16},
      {1, 1, 1, 1, 1, false, 0},  {1, 33, 65, 5, 3, false, 16},
  };
  uint32_t seed = 200;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "B " << c.b << " Lq " << c.lq << " Lk " << c.lk << " H " << c.heads << " D "
                 << c.d << " causal " << c.causal << " chunk " << c.chunk);
    cpu_set_attention_chunk_rows(*be_, c.chunk);
    const int64_t hd = c.heads * c.d;
    Tensor q = rounded(random_host({c.b, c.lq, hd}, seed++, -2.f, 2.f), dt());
    Tensor k = rounded(random_host({c.b, c.lk, hd}, seed++, -2.f, 2.f), dt());
    Tensor v = rounded(random_host({c.b, c.lk, hd}, seed++), dt());
    Tensor expect = ref::attention(q, k, v, int(c.heads), c.causal);
    Tensor y = be_->attention(to_device(*be_, q, dt()), to_device(*be_, k, dt()),
                              to_device(*be_, v, dt()), int(c.heads), c.causal);
    EXPECT_LE(ref::rel_error(be_->download(y), expect), product_tol(dt()));
  }
  cpu_set_attention_chunk_rows(*be_, 0);
}

TEST_P(CpuKernelsOwn, GroupNormMatchesReference) {
  struct Case {
    Shape x;
    int groups;
    Act act;
    float offset;  // added to the input: a large mean tests the two-pass variance
  };
  const Case cases[] = {
      {{1, 4, 4, 8}, 2, Act::None, 0.f},    {{2, 7, 5, 32}, 8, Act::SiLU, 3.f},
      {{1, 33, 17, 40}, 4, Act::SiLU, 0.f}, {{3, 1, 1, 6}, 3, Act::None, 0.f},
      {{1, 2, 3, 5}, 1, Act::SiLU, 100.f},  {{2, 64, 65, 64}, 32, Act::None, 0.5f}};
  uint32_t seed = 300;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "x " << c.x.str() << " groups " << c.groups);
    Tensor x = input(c.x, seed++, c.offset - 1.f, c.offset + 1.f);
    Tensor g = random_host({c.x[-1]}, seed++, 0.5f, 1.5f), b = random_host({c.x[-1]}, seed++);
    Tensor expect = ref::group_norm(x, c.groups, g, b, 1e-5f, c.act);
    Tensor y = be_->group_norm(dev(x), c.groups, be_->vector(g), be_->vector(b), 1e-5f, c.act);
    EXPECT_LE(ref::rel_error(be_->download(y), expect), elementwise_tol(dt()));
  }
}

TEST_P(CpuKernelsOwn, LayerNormMatchesReference) {
  const Shape shapes[] = {{1, 1}, {2, 77, 40}, {5, 1}, {4, 1283}, {3, 2, 768}};
  uint32_t seed = 400;
  for (const Shape& s : shapes) {
    SCOPED_TRACE(s.str());
    Tensor x = input(s, seed++, 1.f, 3.f);
    Tensor g = random_host({s[-1]}, seed++, 0.5f, 1.5f), b = random_host({s[-1]}, seed++);
    Tensor expect = ref::layer_norm(x, g, b, 1e-5f);
    Tensor y = be_->layer_norm(dev(x), be_->vector(g), be_->vector(b), 1e-5f);
    EXPECT_LE(ref::rel_error(be_->download(y), expect), elementwise_tol(dt()));
  }
}

TEST_P(CpuKernelsOwn, ActivationsMatchReference) {
  const Act acts[] = {Act::None, Act::ReLU, Act::SiLU, Act::GELU, Act::GELUTanh, Act::Tanh};
  const Shape shapes[] = {{1}, {17}, {3, 40001}};
  uint32_t seed = 500;
  for (Act a : acts)
    for (const Shape& s : shapes) {
      SCOPED_TRACE(testing::Message() << act_name(a) << " " << s.str());
      Tensor x = input(s, seed++, -8.f, 8.f);
      Tensor y = be_->activate(dev(x), a);
      EXPECT_LE(ref::rel_error(be_->download(y), ref::activate(x, a)), elementwise_tol(dt()));
    }
}

TEST_P(CpuKernelsOwn, GegluSoftmaxScaleMatchReference) {
  uint32_t seed = 600;
  for (const Shape& s : {Shape{1, 2}, Shape{3, 5, 34}, Shape{2, 100, 640}}) {
    SCOPED_TRACE(s.str());
    Tensor x = input(s, seed++, -4.f, 4.f);
    EXPECT_LE(ref::rel_error(be_->download(be_->geglu(dev(x))), ref::geglu(x)),
              elementwise_tol(dt()));
  }
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7, 77}, Shape{2, 4099}}) {
    SCOPED_TRACE(s.str());
    Tensor x = input(s, seed++, -50.f, 50.f);  // large logits: needs the max subtraction
    for (float scale : {1.f, 0.125f}) {
      EXPECT_LE(ref::rel_error(be_->download(be_->softmax(dev(x), scale)), ref::softmax(x, scale)),
                elementwise_tol(dt()));
    }
    EXPECT_LE(
        ref::rel_error(be_->download(be_->scale(dev(x), -0.5f, 2.f)), ref::scale(x, -0.5f, 2.f)),
        elementwise_tol(dt()));
  }
}

TEST_P(CpuKernelsOwn, BinaryBroadcastingMatchesReference) {
  struct Case {
    Shape a, b;
  };
  const Case cases[] = {{{2, 3, 4, 5}, {2, 3, 4, 5}},
                        {{2, 3, 4, 5}, {5}},
                        {{2, 3, 4, 5}, {2, 1, 1, 5}},
                        {{3, 1}, {1, 4}},
                        {{1}, {2, 3}},
                        {{4, 1, 6}, {5, 1}},
                        {{1, 1}, {1}},
                        {{2, 16, 16, 320}, {2, 1, 1, 320}},
                        {{7}, {3, 1, 7}},
                        {{100000}, {100000}}};
  const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div};
  uint32_t seed = 700;
  for (const Case& c : cases)
    for (BinaryOp op : ops) {
      SCOPED_TRACE(testing::Message() << c.a.str() << " op " << int(op) << " " << c.b.str());
      Tensor a = input(c.a, seed++);
      Tensor b = input(c.b, seed++, 0.5f, 2.f);  // away from 0 for Div
      Tensor expect = ref::binary(op, a, b);
      Tensor y = be_->binary(op, dev(a), dev(b));
      ASSERT_EQ(y.shape(), expect.shape());
      EXPECT_LE(ref::rel_error(be_->download(y), expect), elementwise_tol(dt()));
    }
  EXPECT_THROW(be_->binary(BinaryOp::Add, dev(input({3, 4}, 1)), dev(input({3}, 2))), Error);
}

TEST_P(CpuKernelsOwn, UpsampleAndConcatAreExact) {
  uint32_t seed = 800;
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 7}, Shape{1, 16, 16, 320}}) {
    Tensor x = input(s, seed++);
    EXPECT_EQ(
        ref::rel_error(be_->download(be_->upsample_nearest2x(dev(x))), ref::upsample_nearest2x(x)),
        0.0);
  }
  for (auto [a, b] :
       {std::pair{Shape{1, 1}, Shape{1, 2}}, std::pair{Shape{2, 3, 5, 7}, Shape{2, 3, 5, 9}}}) {
    Tensor ta = input(a, seed++), tb = input(b, seed++);
    EXPECT_EQ(ref::rel_error(be_->download(be_->concat_channels(dev(ta), dev(tb))),
                             ref::concat_channels(ta, tb)),
              0.0);
  }
}

TEST_P(CpuKernelsOwn, CastMatchesReferenceBitExactly) {
  Tensor x = random_host({3, 40000}, 900, -70000.f, 70000.f);
  x.data_as<float>()[0] = std::nanf("");
  x.data_as<float>()[1] = INFINITY;
  x.data_as<float>()[2] = 1e-7f;  // f16 subnormal
  Tensor xd = dev(x);
  for (DType to : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(to));
    Tensor ours = be_->download(be_->cast(xd, to), to);
    Tensor expect = ref::cast(ref::cast(x, dt()), to);
    ASSERT_EQ(ours.nbytes(), expect.nbytes());
    EXPECT_EQ(std::memcmp(ours.data(), expect.data(), ours.nbytes()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(CpuKernels, CpuKernelsDnnl, ::testing::Values(DType::F32, DType::BF16),
                         dtype_param_name);
INSTANTIATE_TEST_SUITE_P(CpuKernels, CpuKernelsOwn, ::testing::Values(DType::F32, DType::BF16),
                         dtype_param_name);

TEST(CpuKernelsMath, ApproximationsMatchLibm) {
  double exp_rel = 0, erf_abs = 0, erfc_rel = 0, tanh_abs = 0;
  for (float z = 0.f; z <= 5.f; z += 0.000713f) {
    erfc_rel = std::max(erfc_rel, std::fabs(cpu::erfc_nonneg(z) / std::erfc(double(z)) - 1));
  }
  for (float x = -87.f; x <= 88.f; x += 0.00731f) {
    exp_rel = std::max(exp_rel, std::fabs(cpu::exp_approx(x) / std::exp(double(x)) - 1));
  }
  for (float x = -10.f; x <= 10.f; x += 0.000917f) {
    erf_abs = std::max(erf_abs, std::fabs(cpu::erf_approx(x) - std::erf(double(x))));
    tanh_abs = std::max(tanh_abs, std::fabs(cpu::tanh_approx(x) - std::tanh(double(x))));
  }
  EXPECT_LE(exp_rel, 1e-6);
  EXPECT_LE(erf_abs, 5e-7);
  EXPECT_LE(erfc_rel, 2e-6);
  EXPECT_LE(tanh_abs, 5e-7);
  EXPECT_NEAR(cpu::silu(-200.f), 0.f, 1e-30f);  // exp clamps at e^88: no inf/inf NaN
  EXPECT_FLOAT_EQ(cpu::silu(200.f), 200.f);
}

TEST(CpuKernelsBackend, DtypeSelectionAndErrors) {
  BackendOptions o;
  auto be = make_backend(o);
  EXPECT_EQ(be->compute_dtype(), cpu_has_native_bf16() ? DType::BF16 : DType::F32);
  EXPECT_NE(be->description().find("oneDNN"), std::string::npos);
  o.dtype = "f16";
  EXPECT_THROW(make_backend(o), Error);
  o.dtype = "bf16";
  if (!cpu_has_native_bf16()) {
    EXPECT_THROW(make_backend(o), Error);
  }
  auto f32 = f32_backend();
  Tensor x = to_device(*f32, random_host({1, 4, 4, 3}, 1), DType::F32);
  Weight w = f32->conv_weight(random_host({8, 5, 3, 3}, 2));
  EXPECT_THROW(f32->conv2d(x, w, nullptr, {}), Error);  // 3 channels into a 5-channel conv
}

// One small pass through most kernels, all intermediates from the backend's arena.
Tensor mixed_pass(Backend& be, const Weight& cw, const Weight& lw, const Weight& g, const Weight& b,
                  const Tensor& input) {
  Tensor x = to_device(be, input, be.compute_dtype());
  Tensor h = be.conv2d(x, cw, nullptr, {1, 1}, Act::SiLU, &x);
  h = be.group_norm(h, 4, g, b, 1e-5f, Act::SiLU);
  Tensor t = h.reshape({1, 64, 16});
  Tensor a = be.attention(t, t, t, 2);
  Tensor y = be.linear(a, lw, nullptr, Act::None, &t).reshape({1, 8, 8, 16});
  Tensor up = be.upsample_nearest2x(y);
  Tensor s = be.binary(BinaryOp::Mul, up, be.scale(up, 2.f, 1.f));
  return be.concat_channels(s, up);
}

TEST(CpuKernelsArena, SecondPassAfterReserveDoesNotOverflow) {
  auto be = f32_backend();
  const Weight cw = be->conv_weight(random_host({16, 16, 3, 3}, 1, -0.2f, 0.2f));
  const Weight lw = be->linear_weight(random_host({16, 16}, 2, -0.3f, 0.3f));
  const Weight g = be->vector(random_host({16}, 3, 0.5f, 1.5f));
  const Weight b = be->vector(random_host({16}, 4));
  const Tensor input = random_host({1, 8, 8, 16}, 5);

  Tensor first = be->download(mixed_pass(*be, cw, lw, g, b, input));
  EXPECT_GT(be->arena().overflow_count(), 0u);  // nothing was reserved yet
  EXPECT_EQ(be->arena().live_bytes(), 0u);
  be->arena().reserve(be->arena().peak());

  Tensor out = mixed_pass(*be, cw, lw, g, b, input);
  void* address = out.data();
  Tensor second = be->download(out);
  out = Tensor();
  EXPECT_EQ(be->arena().overflow_count(), 0u);
  EXPECT_EQ(ref::rel_error(second, first), 0.0);
  // The same pass again lands at the same addresses.
  const size_t prims = cpu_backend_stats(*be).primitives_created;
  EXPECT_EQ(mixed_pass(*be, cw, lw, g, b, input).data(), address);
  EXPECT_EQ(be->arena().overflow_count(), 0u);
  EXPECT_EQ(cpu_backend_stats(*be).primitives_created, prims);
}

// The backend counts the FLOPs of what it ran from the calls' shapes (benchmarks report
// GFLOP/s from it): a multiply-add is 2, causal attention keeps half of its scores.
TEST(CpuBackendFlops, CountsConvLinearAndAttention) {
  BackendOptions o;
  o.dtype = "f32";
  auto be = make_backend(o);
  auto delta = [&](const std::function<void()>& fn) {
    const uint64_t before = cpu_backend_stats(*be).flops;
    fn();
    return cpu_backend_stats(*be).flops - before;
  };
  const Tensor x = be->upload(random_host({2, 6, 5, 3}, 1));  // NHWC
  const Weight cw = be->conv_weight(random_host({4, 3, 3, 3}, 2));
  // stride 2, pad 1: 3 × 3 outputs per image.
  EXPECT_EQ(delta([&] { be->conv2d(x, cw, nullptr, {2, 1}); }), 2u * 2 * 3 * 3 * 4 * 3 * 3 * 3);
  const Weight lw = be->linear_weight(random_host({7, 3}, 3));
  EXPECT_EQ(delta([&] { be->linear(x, lw, nullptr); }), 2u * 60 * 3 * 7);
  const Tensor q = be->upload(random_host({2, 9, 8}, 4));
  const Tensor k = be->upload(random_host({2, 11, 8}, 5));
  EXPECT_EQ(delta([&] { be->attention(q, k, k, 2); }), 4u * 2 * 9 * 11 * 8);
  EXPECT_EQ(delta([&] { be->attention(q, q, q, 2, true); }), 4u * 2 * 9 * 9 * 8 / 2);
}

}  // namespace
}  // namespace sd
