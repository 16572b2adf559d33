// The CUDA backend's kernels against the reference kernels (backend/cpu/reference_kernels.h),
// in f32 (‖ours − ref‖ / ‖ref‖ ≤ 1e-5) and bf16 (≤ 2e-2), on random inputs of awkward sizes.
// Every output lands on memory poisoned with NaN first, so an unwritten element fails.
// Without a usable GPU every test reports SKIPPED.
#include <gtest/gtest.h>

#ifdef SD_WITH_CUDA

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/reference_kernels.h"
#include "backend/cuda/cuda_backend.h"

namespace sd {
namespace {

Tensor random_host(const Shape& shape, uint32_t seed, float lo = -2.f, float hi = 2.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::host(shape, DType::F32);
  float* p = static_cast<float*>(t.data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = dist(rng);
  return t;
}

class CudaKernels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no usable GPU";
    BackendOptions o;
    o.device = "cuda";
    o.dtype = GetParam();
    be_ = make_backend(o);
    be_->arena().reserve(size_t(256) << 20);  // deterministic placement, see poison()
  }

  double tol() const { return be_->compute_dtype() == DType::F32 ? 1e-5 : 2e-2; }

  // Device copy of a host tensor in the compute dtype.
  Tensor up(const Tensor& host) { return be_->upload(host); }
  Tensor down(const Tensor& dev) { return be_->download(dev, DType::F32); }
  // The values the GPU actually holds for `host` (rounded to the compute dtype), as f32.
  Tensor rounded(const Tensor& host) { return down(up(host)); }

  // Fills the arena block the next allocation of this size will get with NaN, then frees it:
  // the arena places first-fit, so the kernel's output lands on the poisoned bytes.
  void poison(const Shape& shape, DType dtype) {
    Tensor nan = Tensor::host(shape, DType::F32);
    float* p = static_cast<float*>(nan.data());
    for (int64_t i = 0; i < nan.numel(); ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
    Tensor dev = be_->alloc(shape, dtype);
    be_->copy_from_host(nan, dev);
    be_->synchronize();
  }

  void expect_close(const Tensor& ours_dev, const Tensor& ref, const std::string& what) {
    const Tensor ours = down(ours_dev);
    ASSERT_EQ(ours.shape(), ref.shape()) << what;
    const double err = ref::rel_error(ours, ref);
    EXPECT_LE(err, tol()) << what << " (" << GetParam() << ")";
  }

  std::unique_ptr<Backend> be_;
};

INSTANTIATE_TEST_SUITE_P(Cuda, CudaKernels, ::testing::Values("f32", "bf16"),
                         [](const auto& info) { return info.param; });

TEST_P(CudaKernels, TransfersRoundTripAndConvert) {
  const Tensor h = random_host({3, 5, 7}, 1);
  const Tensor back = rounded(h);
  const Tensor expect = h.to_host_dtype(be_->compute_dtype()).to_host_dtype(DType::F32);
  EXPECT_EQ(0, std::memcmp(back.data(), expect.data(), back.nbytes()));
  // f16 host data into a device tensor of the compute dtype, and back into a bf16 host tensor.
  const Tensor h16 = h.to_host_dtype(DType::F16);
  Tensor dev = be_->alloc(h.shape());
  be_->copy_from_host(h16, dev);
  const Tensor out = be_->download(dev, DType::BF16);
  EXPECT_LE(ref::rel_error(out, h16), 1e-2);
  EXPECT_NE(be_->description().find("cuda"), std::string::npos);
}

TEST_P(CudaKernels, Activate) {
  for (Shape s : {Shape{3, 5, 7}, Shape{2, 16, 16, 40}, Shape{1}}) {
    const Tensor h = random_host(s, 2, -4.f, 4.f);
    const Tensor x = up(h);
    const Tensor xr = down(x);
    for (Act a : {Act::None, Act::ReLU, Act::SiLU, Act::GELU, Act::GELUTanh, Act::Tanh}) {
      poison(s, be_->compute_dtype());
      expect_close(be_->activate(x, a), ref::activate(xr, a),
                   std::string("activate ") + act_name(a) + " " + s.str());
    }
  }
}

TEST_P(CudaKernels, ActivateOnMisalignedView) {
  // Rows 1.. of [3, 35]: starts 35 elements in, so 16-byte vector loads are impossible.
  const Tensor h = random_host({3, 35}, 3);
  const Tensor x = up(h).slice0(1, 3);
  const Tensor xr = down(x);
  expect_close(be_->activate(x, Act::SiLU), ref::activate(xr, Act::SiLU), "misaligned silu");
  expect_close(be_->scale(x, 0.5f, 1.f), ref::scale(xr, 0.5f, 1.f), "misaligned scale");
}

TEST_P(CudaKernels, Scale) {
  const Tensor h = random_host({4, 9, 11}, 4);
  const Tensor x = up(h);
  poison(h.shape(), be_->compute_dtype());
  expect_close(be_->scale(x, -1.5f, 0.25f), ref::scale(down(x), -1.5f, 0.25f), "scale");
}

TEST_P(CudaKernels, Geglu) {
  for (Shape s : {Shape{2, 7, 48}, Shape{3, 10}, Shape{1, 4, 2560}}) {
    const Tensor x = up(random_host(s, 5, -3.f, 3.f));
    Shape ys = s;
    ys[-1] /= 2;
    poison(ys, be_->compute_dtype());
    expect_close(be_->geglu(x), ref::geglu(down(x)), "geglu " + s.str());
  }
}

TEST_P(CudaKernels, BinaryWithBroadcasting) {
  const std::pair<Shape, Shape> cases[] = {{{2, 4, 4, 8}, {2, 4, 4, 8}},
                                           {{2, 4, 4, 8}, {8}},
                                           {{2, 4, 4, 8}, {2, 1, 1, 8}},
                                           {{5, 1}, {1, 6}},
                                           {{3}, {2, 3}},
                                           {{3, 5, 7}, {3, 5, 7}},
                                           {{1, 9, 1}, {4, 1, 3}}};
  uint32_t seed = 10;
  for (const auto& [sa, sb] : cases) {
    const Tensor a = up(random_host(sa, seed++));
    const Tensor b = up(random_host(sb, seed++, 0.5f, 2.f));  // no division by ~0
    const Tensor ar = down(a), br = down(b);
    for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div}) {
      poison(ref::broadcast_shape(sa, sb), be_->compute_dtype());
      expect_close(be_->binary(op, a, b), ref::binary(op, ar, br),
                   "binary " + std::to_string(int(op)) + " " + sa.str() + " " + sb.str());
    }
  }
  EXPECT_THROW(be_->binary(BinaryOp::Add, up(random_host({2, 3}, 1)), up(random_host({4}, 2))),
               Error);
}

TEST_P(CudaKernels, Cast) {
  const Tensor h = random_host({5, 13}, 20);
  const Tensor x = up(h);
  const Tensor xr = down(x);
  for (DType t : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor y = be_->cast(x, t);
    ASSERT_EQ(y.dtype(), t);
    const Tensor got = be_->download(y, t);
    const Tensor want = ref::cast(xr, t);
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.nbytes())) << dtype_name(t);
  }
}

TEST_P(CudaKernels, ConcatChannels) {
  const std::pair<Shape, Shape> cases[] = {
      {{2, 3, 3, 8}, {2, 3, 3, 16}}, {{2, 3, 5}, {2, 3, 7}}, {{1, 4, 4, 320}, {1, 4, 4, 640}}};
  uint32_t seed = 30;
  for (const auto& [sa, sb] : cases) {
    const Tensor a = up(random_host(sa, seed++)), b = up(random_host(sb, seed++));
    Shape ys = sa;
    ys[-1] += sb[-1];
    poison(ys, be_->compute_dtype());
    expect_close(be_->concat_channels(a, b), ref::concat_channels(down(a), down(b)),
                 "concat " + sa.str() + " " + sb.str());
  }
}

TEST_P(CudaKernels, UpsampleNearest2x) {
  for (Shape s : {Shape{2, 3, 5, 8}, Shape{1, 4, 3, 3}, Shape{1, 8, 8, 320}}) {
    const Tensor x = up(random_host(s, 40));
    poison({s[0], 2 * s[1], 2 * s[2], s[3]}, be_->compute_dtype());
    expect_close(be_->upsample_nearest2x(x), ref::upsample_nearest2x(down(x)),
                 "upsample " + s.str());
  }
}

TEST_P(CudaKernels, Softmax) {
  const std::pair<Shape, float> cases[] = {
      {{4, 77}, 0.125f}, {{3, 1000}, 1.f}, {{2, 3, 5}, 2.f}, {{1, 1}, 1.f}, {{2, 4096}, 0.05f}};
  uint32_t seed = 50;
  for (const auto& [s, scale] : cases) {
    const Tensor x = up(random_host(s, seed++, -8.f, 8.f));
    poison(s, be_->compute_dtype());
    expect_close(be_->softmax(x, scale), ref::softmax(down(x), scale), "softmax " + s.str());
  }
}

TEST_P(CudaKernels, LayerNorm) {
  uint32_t seed = 60;
  for (Shape s : {Shape{6, 320}, Shape{2, 5, 7}, Shape{1, 1280}, Shape{3, 1}}) {
    // An offset mean checks that the statistics do not cancel catastrophically.
    const Tensor x = up(random_host(s, seed++, 3.f, 5.f));
    const Tensor g = random_host({s[-1]}, seed++, 0.5f, 1.5f);
    const Tensor b = random_host({s[-1]}, seed++);
    poison(s, be_->compute_dtype());
    expect_close(be_->layer_norm(x, be_->vector(g), be_->vector(b), 1e-5f),
                 ref::layer_norm(down(x), g, b, 1e-5f), "layer_norm " + s.str());
  }
}

TEST_P(CudaKernels, GroupNorm) {
  struct Case {
    Shape s;
    int groups;
  };
  const Case cases[] = {{{2, 8, 8, 64}, 32}, {{1, 16, 16, 320}, 32}, {{1, 5, 7, 12}, 3},
                        {{2, 4, 24}, 4},     {{1, 64, 64, 320}, 32}, {{3, 1, 1, 32}, 32}};
  uint32_t seed = 70;
  for (const Case& c : cases) {
    const Tensor x = up(random_host(c.s, seed++, 4.f, 6.f));
    const Tensor xr = down(x);
    const Tensor g = random_host({c.s[-1]}, seed++, 0.5f, 1.5f);
    const Tensor b = random_host({c.s[-1]}, seed++);
    const Weight gw = be_->vector(g), bw = be_->vector(b);
    for (Act a : {Act::None, Act::SiLU}) {
      poison(c.s, be_->compute_dtype());
      expect_close(
          be_->group_norm(x, c.groups, gw, bw, 1e-6f, a),
          ref::group_norm(xr, c.groups, g, b, 1e-6f, a),
          "group_norm " + c.s.str() + " G=" + std::to_string(c.groups) + " " + act_name(a));
    }
  }
}

TEST_P(CudaKernels, GroupNormIsDeterministic) {
  const Tensor x = up(random_host({2, 32, 32, 128}, 80));
  const Weight g = be_->vector(random_host({128}, 81)), b = be_->vector(random_host({128}, 82));
  const Tensor y1 = down(be_->group_norm(x, 32, g, b, 1e-5f, Act::SiLU));
  const Tensor y2 = down(be_->group_norm(x, 32, g, b, 1e-5f, Act::SiLU));
  EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.nbytes()));
}

TEST_P(CudaKernels, Linear) {
  struct Case {
    Shape x;
    int64_t out;
  };
  const Case cases[] = {{{7, 13}, 5}, {{64, 320}, 1280}, {{2, 9, 40}, 24}, {{1, 77, 768}, 320}};
  uint32_t seed = 90;
  for (const Case& c : cases) {
    const int64_t in = c.x[-1];
    const float r = 1.f / std::sqrt(float(in));
    const Tensor x = up(random_host(c.x, seed++));
    const Tensor wh = random_host({c.out, in}, seed++, -r, r);
    const Tensor bh = random_host({c.out}, seed++);
    Shape ys = c.x;
    ys[-1] = c.out;
    const Tensor res = up(random_host(ys, seed++));
    const Weight w = be_->linear_weight(wh), b = be_->vector(bh);
    const Tensor xr = down(x), wr = down(w.t), resr = down(res);
    for (Act a : {Act::None, Act::ReLU, Act::GELUTanh, Act::GELU, Act::SiLU}) {
      for (int variant = 0; variant < 3; ++variant) {  // plain, + bias, + bias + residual
        const bool with_bias = variant >= 1, with_res = variant == 2;
        poison(ys, be_->compute_dtype());
        const Tensor y = be_->linear(x, w, with_bias ? &b : nullptr, a, with_res ? &res : nullptr);
        expect_close(y,
                     ref::linear(xr, wr, with_bias ? &bh : nullptr, a, with_res ? &resr : nullptr),
                     "linear " + c.x.str() + " -> " + std::to_string(c.out) + " " + act_name(a) +
                         " variant " + std::to_string(variant));
      }
    }
  }
}

TEST_P(CudaKernels, LinearRejectsMismatchedShapes) {
  const Weight w = be_->linear_weight(random_host({8, 16}, 1));
  EXPECT_THROW(be_->linear(up(random_host({4, 15}, 2)), w, nullptr), Error);
}

TEST_P(CudaKernels, ConvAndAttentionAreNotImplementedYet) {
  const Tensor x = up(random_host({1, 4, 4, 8}, 1));
  const Weight w = be_->conv_weight(random_host({8, 8, 3, 3}, 2));
  EXPECT_EQ(w.t.shape(), (Shape{8, 3, 3, 8}));  // OHWI
  try {
    be_->conv2d(x, w, nullptr, Conv2dParams{1, 1});
    ADD_FAILURE() << "conv2d did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not implemented on the CUDA backend"), std::string::npos);
  }
  const Tensor q = x.reshape({1, 16, 8});
  EXPECT_THROW(be_->attention(q, q, q, 2), Error);
}

TEST(CudaBackend, OptionsAreChecked) {
  if (!cuda_available()) GTEST_SKIP() << "no usable GPU";
  EXPECT_FALSE(cuda_device_info().empty());
  BackendOptions o;
  o.device = "cuda";
  o.dtype = "f16";
  EXPECT_THROW(make_backend(o), Error);
  o.dtype = "auto";
  EXPECT_EQ(make_backend(o)->device(), Device::CUDA);
}

TEST(CudaBackend, WithoutGpuCreationFailsWithTheReason) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  BackendOptions o;
  o.device = "cuda";
  try {
    make_backend(o);
    ADD_FAILURE() << "make_backend(cuda) succeeded without a GPU";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA backend unavailable"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(cuda_device_info().empty());
}

}  // namespace
}  // namespace sd

#else  // !SD_WITH_CUDA

TEST(CudaBackend, NotBuilt) {
  GTEST_SKIP() << "streamdiff was built without CUDA";
}

#endif
