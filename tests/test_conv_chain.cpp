// Backend::conv_chain on the CPU (intermediates in oneDNN's preferred layout, reordered only at
// the ends) against its twin, the same steps as conv2d / upsample_nearest2x calls one by one
// (Backend's default, itself tested against the reference kernels in test_cpu_kernels.cpp).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "test_support.h"

namespace sd {
namespace {

Tensor random_host(const Shape& s, uint32_t seed, float scale) {
  Tensor t = Tensor::host(s, DType::F32);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = dist(gen);
  return t;
}

struct Layers {
  std::vector<Weight> w, b;
  std::vector<ChainStep> steps;
  Backend& be;
  explicit Layers(Backend& backend) : be(backend) {
    w.reserve(16), b.reserve(16);  // steps point into w and b
  }
  // A k x k convolution in -> out (He-like scale, so values stay O(1) down the chain).
  Layers& conv(int64_t in, int64_t out, int k, int stride, bool bias, Act act, int residual = -1) {
    const uint32_t seed = uint32_t(w.size() * 7 + 1);
    w.push_back(be.conv_weight(random_host(Shape{out, in, k, k}, seed, 1.5f / float(in * k))));
    b.push_back(be.vector(random_host(Shape{out}, seed + 3, 0.1f)));
    steps.push_back({&w.back(), bias ? &b.back() : nullptr, {stride, k / 2}, act, residual});
    return *this;
  }
  Layers& upsample() {
    steps.push_back(ChainStep{});
    return *this;
  }
};

// Runs `layers` on x both ways and returns the relative difference.
double chain_vs_steps(Backend& be, const Layers& layers, const Tensor& x_host) {
  Tensor x = be.upload(x_host);
  cpu_set_conv_chain_fused(be, true);
  Tensor fused = be.download(be.conv_chain(x, layers.steps));
  cpu_set_conv_chain_fused(be, false);
  Tensor steps = be.download(be.conv_chain(x, layers.steps));
  cpu_set_conv_chain_fused(be, true);
  EXPECT_EQ(fused.shape(), steps.shape());
  return test::rel_error(fused, steps);
}

class ConvChain : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "bf16" && !cpu_has_native_bf16())
      GTEST_SKIP() << "this CPU does not run bf16 natively";
    be_ = test::cpu_backend(GetParam());
  }
  double tolerance() const { return GetParam() == "bf16" ? 2e-2 : 1e-5; }
  std::unique_ptr<Backend> be_;
};

// TAESD-like: residual blocks, upsamples between convolutions of 16 channels (a whole number of
// oneDNN channel blocks, upsampled in the blocked layout), a stride-2 convolution, odd sizes,
// two images; it ends in a 3x3 convolution (reordered back to NHWC).
TEST_P(ConvChain, BlocksUpsamplesAndStridesMatchConvByConv) {
  Layers l(*be_);
  l.conv(5, 16, 3, 1, true, Act::ReLU)
      .conv(16, 16, 3, 1, true, Act::ReLU)
      .conv(16, 16, 3, 1, true, Act::ReLU, 1)  // relu(conv + output of step 0)
      .upsample()
      .conv(16, 16, 3, 1, false, Act::None)
      .conv(16, 24, 3, 2, true, Act::SiLU)
      .conv(24, 24, 3, 1, true, Act::ReLU, 6)  // + output of step 5
      .conv(24, 3, 3, 1, true, Act::None);
  EXPECT_LE(chain_vs_steps(*be_, l, random_host(Shape{2, 9, 11, 5}, 42, 1.f)), tolerance());
}

// Channel counts that are no whole number of blocks (12: padded blocked layout, upsampled
// through NHWC), an upsample as the last step, a 1x1 convolution (NHWC natively) and a residual
// reaching back to the chain's input.
TEST_P(ConvChain, PaddedChannelsOneByOneAndTrailingUpsampleMatchConvByConv) {
  Layers l(*be_);
  l.conv(12, 12, 3, 1, true, Act::ReLU)
      .conv(12, 12, 1, 1, true, Act::None, 0)  // + the chain's input
      .upsample()
      .conv(12, 7, 3, 1, true, Act::Tanh)
      .upsample();
  EXPECT_LE(chain_vs_steps(*be_, l, random_host(Shape{1, 6, 5, 12}, 7, 1.f)), tolerance());
  Layers empty(*be_);  // no steps: the input, copied
  EXPECT_EQ(chain_vs_steps(*be_, empty, random_host(Shape{1, 4, 4, 3}, 9, 1.f)), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Cpu, ConvChain, ::testing::Values("f32", "bf16"));

TEST(ConvChainErrors, BadChainsNameTheStep) {
  auto be = test::cpu_backend("f32");
  Tensor x = be->upload(random_host(Shape{1, 8, 8, 4}, 1, 1.f));
  Layers forward(*be);
  forward.conv(4, 4, 3, 1, true, Act::ReLU, 2);  // adds an output not made yet
  EXPECT_NE(test::error_of([&] {
              be->conv_chain(x, forward.steps);
            }).find("conv_chain: step 0 adds output 2, which is not an earlier one"),
            std::string::npos);
  Layers shape(*be);
  shape.conv(4, 8, 3, 1, true, Act::ReLU).conv(8, 8, 3, 2, true, Act::None, 1);
  EXPECT_NE(test::error_of([&] { be->conv_chain(x, shape.steps); })
                .find("conv_chain step 1: residual (output 1) [1, 8, 8, 8] does not match [1, 4, "
                      "4, 8]"),
            std::string::npos);
  Layers channels(*be);
  channels.conv(3, 8, 3, 1, true, Act::None);  // x has 4 channels
  EXPECT_NE(test::error_of([&] {
              be->conv_chain(x, channels.steps);
            }).find("conv_chain step 0: x [1, 8, 8, 4] (NHWC) does not match weight"),
            std::string::npos);
  Layers upsample(*be);
  upsample.upsample();
  upsample.steps.back().act = Act::ReLU;
  EXPECT_NE(test::error_of([&] {
              be->conv_chain(x, upsample.steps);
            }).find("conv_chain: step 0 is an upsample with a bias, residual or activation"),
            std::string::npos);
}

}  // namespace
}  // namespace sd
