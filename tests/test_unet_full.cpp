// The full-size UNets (SD 1.5, and SD 2.1 = sd-turbo's architecture) at 256x256 (32x32 latents)
// against diffusers' UNet2DConditionModel in fp32 on CPU. Neither side loads weights: both fill
// every parameter from the counter-based generator keyed by its name (models/unet_hash_weights.h
// here, tools/make_unet_full_fixtures.py there), and the inputs come from the same generator, so
// only the reference outputs are committed (tests/fixtures/unet_full/). A batch of 2 rows with
// timesteps 999 and 500. Each case builds its model and frees it before the next (f32 peak about
// 7 GB).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "io/safetensors.h"
#include "models/ldm_checkpoint.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"
#include "test_support.h"

namespace sd {
namespace {

const std::string kDir = std::string(SD_FIXTURE_DIR) + "/unet_full";
constexpr int64_t kBatch = 2, kLatent = 32, kTokens = 77;

using test::rel_error;

double std_dev(const Tensor& t) {
  const float* p = t.data_as<float>();
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    s += p[i];
    s2 += double(p[i]) * p[i];
  }
  const double mean = s / double(t.numel());
  return std::sqrt(s2 / double(t.numel()) - mean * mean);
}

// The fixture stores the first values of each generated input; they must match bit for bit.
void expect_same_head(const Tensor& generated, const Tensor& head, const char* what) {
  ASSERT_LE(head.numel(), generated.numel());
  for (int64_t i = 0; i < head.numel(); ++i)
    ASSERT_EQ(generated.data_as<float>()[i], head.data_as<float>()[i])
        << what << " element " << i << " differs from the fixture's";
}

struct FullCase {
  const char* family;  // sd15 or sd21
  const char* dtype;
  double tol;
};

void PrintTo(const FullCase& c, std::ostream* os) {
  *os << c.family << " " << c.dtype;
}

std::string case_name(const testing::TestParamInfo<FullCase>& info) {
  return std::string(info.param.family) + "_" + info.param.dtype;
}

class UnetFull : public testing::TestWithParam<FullCase> {};

TEST_P(UnetFull, MatchesDiffusersAt256) {
  const FullCase& c = GetParam();
  if (std::string(c.dtype) == "bf16" && !cpu_has_native_bf16())
    GTEST_SKIP() << "this CPU has no native bf16";
  const UNetConfig config =
      std::string(c.family) == "sd15" ? sd15_unet_config() : sd21_unet_config();
  auto ref = SafetensorsFile::open(kDir + "/" + c.family + "_256.safetensors");
  Tensor expect = ref->load("output", DType::F32);
  Tensor timesteps_t = ref->load("timesteps", DType::F32);
  const std::vector<float> timesteps(timesteps_t.data_as<float>(),
                                     timesteps_t.data_as<float>() + timesteps_t.numel());
  ASSERT_EQ(timesteps.size(), size_t(kBatch));
  // A saturated or vanishing reference would make a weak test.
  const double ref_std = std_dev(expect);
  EXPECT_GT(ref_std, 0.1);
  EXPECT_LT(ref_std, 10.0);

  const float input_scale = std::sqrt(3.f);
  Tensor sample =
      hash_host_tensor("unet_full.sample", Shape{kBatch, kLatent, kLatent, 4}, input_scale);
  Tensor states = hash_host_tensor("unet_full.encoder_hidden_states",
                                   Shape{kBatch, kTokens, config.cross_attention_dim}, input_scale);
  expect_same_head(sample, ref->load("sample_head", DType::F32), "sample");
  expect_same_head(states, ref->load("encoder_hidden_states_head", DType::F32),
                   "encoder_hidden_states");

  BackendOptions opts;
  opts.device = "cpu";
  opts.dtype = c.dtype;
  auto backend = make_backend(opts);
  HashUNetWeights weights(std::string("hash-random ") + c.family + " UNet weights");
  const auto t0 = std::chrono::steady_clock::now();
  auto model = UNet::create(config, weights, *backend);
  const auto t1 = std::chrono::steady_clock::now();

  Tensor temb = backend->download(model->time_embedding(timesteps, kBatch));
  const double temb_err = rel_error(temb, ref->load("time_embedding", DType::F32));
  EXPECT_LE(temb_err, c.tol) << c.family << " " << c.dtype << " time embedding";

  Tensor out = backend->download(
      model->forward(backend->upload(sample), timesteps, backend->upload(states)));
  const auto t2 = std::chrono::steady_clock::now();
  const double err = rel_error(out, expect);
  EXPECT_LE(err, c.tol) << c.family << " " << c.dtype;
  std::printf(
      "  %s %s: %.1f M parameters (built in %.1f s), forward %.1f s, output std %.3f, rel error "
      "%.3g (time embedding %.3g)\n",
      c.family, c.dtype, double(weights.params()) * 1e-6,
      std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t2 - t1).count(), ref_std, err, temb_err);
}

INSTANTIATE_TEST_SUITE_P(UnetFull, UnetFull,
                         testing::Values(FullCase{"sd15", "f32", 1e-4},
                                         FullCase{"sd21", "f32", 1e-4},
                                         FullCase{"sd15", "bf16", 2e-2},
                                         FullCase{"sd21", "bf16", 2e-2}),
                         case_name);

// The rule itself, on the shapes the UNet asks for (the Python twin must give the same values).
TEST(UnetFullHashRule, ScalesByFanInAndSeparatesNormsFromBiases) {
  HashParamRule conv = hash_unet_param_rule("conv_in.weight", Shape{320, 4, 3, 3});
  EXPECT_EQ(conv.scale, std::sqrt(3.f / 36.f));
  EXPECT_EQ(conv.offset, 0.f);
  HashParamRule lin = hash_unet_param_rule("time_embedding.linear_1.weight", Shape{1280, 320});
  EXPECT_EQ(lin.scale, std::sqrt(3.f / 320.f));
  HashParamRule gamma = hash_unet_param_rule("conv_norm_out.weight", Shape{320});
  EXPECT_EQ(gamma.scale, 0.1f);
  EXPECT_EQ(gamma.offset, 1.f);
  HashParamRule bias = hash_unet_param_rule("conv_in.bias", Shape{320});
  EXPECT_EQ(bias.scale, 0.05f);
  EXPECT_EQ(bias.offset, 0.f);
  HashUNetWeights w;
  Tensor t = w.get("conv_norm_out.weight", Shape{320});
  for (int64_t i = 0; i < t.numel(); ++i) {
    EXPECT_GE(t.data_as<float>()[i], 0.9f);
    EXPECT_LE(t.data_as<float>()[i], 1.1f);
  }
  EXPECT_EQ(w.params(), 320);
}

}  // namespace
}  // namespace sd
