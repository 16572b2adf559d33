// UNet2DConditionModel vs diffusers on tiny random configs of both families (fixtures from
// tools/make_unet_fixtures.py: a batch of 3 rows with timesteps 999, 500, 20 and different
// encoder states; sample/output NHWC f32), with and without precomputed cross-attention K/V,
// plus the loader's and the config reader's errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "test_support.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const std::string kDir = std::string(SD_FIXTURE_DIR) + "/unet";

std::vector<float> timesteps_of(const SafetensorsFile& ref) {
  Tensor t = ref.load("timesteps", DType::F32);
  return std::vector<float>(t.data_as<float>(), t.data_as<float>() + t.numel());
}

// Rows of a host tensor picked by `rows` (a batch built from the fixture's rows).
Tensor pick_rows(const Tensor& t, const std::vector<int>& rows) {
  Shape s = t.shape();
  const int64_t n = s[0];
  s[0] = int64_t(rows.size());
  Tensor out = Tensor::host(s, DType::F32);
  const int64_t row = t.numel() / n;
  for (size_t i = 0; i < rows.size(); ++i)
    std::copy_n(t.data_as<float>() + rows[i] * row, row, out.data_as<float>() + i * row);
  return out;
}

// ---- against diffusers -----------------------------------------------------------------------

struct RefCase {
  const char* model;
  const char* dtype;
  double tol;
};

std::string case_name(const testing::TestParamInfo<RefCase>& info) {
  return std::string(info.param.model) + "_" + info.param.dtype;
}

class UnetReference : public testing::TestWithParam<RefCase> {
 protected:
  void SetUp() override {
    const RefCase& c = GetParam();
    if (std::string(c.dtype) == "bf16" && !cpu_has_native_bf16())
      GTEST_SKIP() << "this CPU has no native bf16";
    backend_ = cpu_backend(c.dtype);
    model_ = UNet::load(kDir + "/" + c.model, *backend_);  // the model root: finds unet/
    ref_ = SafetensorsFile::open(kDir + "/" + c.model + "/reference.safetensors");
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<UNet> model_;
  std::unique_ptr<SafetensorsFile> ref_;
};

TEST_P(UnetReference, TimeEmbeddingMatchesDiffusers) {
  const RefCase& c = GetParam();
  const UNetConfig& cfg = model_->config();
  std::vector<float> t = timesteps_of(*ref_);
  Tensor proj = sinusoidal_timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos,
                                              cfg.freq_shift);
  EXPECT_LE(rel_error(proj, ref_->load("time_proj", DType::F32)), 1e-6);
  Tensor emb = backend_->download(model_->time_embedding(t, int64_t(t.size())));
  double err = rel_error(emb, ref_->load("time_embedding", DType::F32));
  EXPECT_LE(err, c.tol);
}

TEST_P(UnetReference, ForwardMatchesDiffusers) {
  const RefCase& c = GetParam();
  Tensor sample = backend_->upload(ref_->load("sample", DType::F32));
  Tensor states = backend_->upload(ref_->load("encoder_hidden_states", DType::F32));
  Tensor expect = ref_->load("output", DType::F32);
  std::vector<float> t = timesteps_of(*ref_);
  ASSERT_EQ(t.size(), 3u);

  Tensor out = backend_->download(model_->forward(sample, t, states));
  double err = rel_error(out, expect);
  EXPECT_LE(err, c.tol) << c.model << " " << c.dtype;

  UNetKVCache kv = model_->precompute_kv(states);
  EXPECT_EQ(kv.batch, 3);
  EXPECT_EQ(kv.distinct_prompts, 3);
  ASSERT_EQ(int(kv.k.size()), model_->num_kv_entries());
  Tensor cached = backend_->download(model_->forward(sample, t, kv));
  if (c.tol <= 1e-4) {
    EXPECT_EQ(rel_error(cached, out), 0.0);  // same rows projected: identical
  }
  // The per-frame path: time embedding precomputed too.
  Tensor temb = model_->time_embedding(t, 3);
  Tensor frame = backend_->download(model_->forward(sample, temb, kv));
  EXPECT_EQ(rel_error(frame, cached), 0.0);
  double err_kv = rel_error(cached, expect);
  EXPECT_LE(err_kv, c.tol) << c.model << " " << c.dtype << " with precomputed K/V";
  std::printf("  %s %s: rel error %.3g, with precomputed K/V %.3g\n", c.model, c.dtype, err,
              err_kv);
}

INSTANTIATE_TEST_SUITE_P(
    Unet, UnetReference,
    testing::Values(RefCase{"sd1_tiny", "f32", 1e-4}, RefCase{"sd2_tiny", "f32", 1e-4},
                    RefCase{"bksdm_small_like", "f32", 1e-4},
                    RefCase{"bksdm_tiny_like", "f32", 1e-4},
                    RefCase{"bksdm_base_like", "f32", 1e-4}, RefCase{"sdxs_like", "f32", 1e-4},
                    RefCase{"sdxs_ds_like", "f32", 1e-4}, RefCase{"sd1_tiny", "bf16", 2e-2},
                    RefCase{"sd2_tiny", "bf16", 2e-2}, RefCase{"bksdm_tiny_like", "bf16", 2e-2},
                    RefCase{"sdxs_like", "bf16", 2e-2}),
    case_name);

// ---- batches, shared prompts, K/V cache ------------------------------------------------------

TEST(UnetBatch, SharedPromptsAreProjectedOnceAndMatchThePlainPath) {
  auto b = cpu_backend("f32");
  auto model = UNet::load(kDir + "/sd2_tiny/unet", *b);
  auto ref = SafetensorsFile::open(kDir + "/sd2_tiny/reference.safetensors");
  Tensor sample_all = ref->load("sample", DType::F32);
  Tensor states_all = ref->load("encoder_hidden_states", DType::F32);
  // Four rows: prompts 1, 0, 1, 1 with samples 0, 1, 2, 0 and four different timesteps.
  const std::vector<int> prompt_of_row{1, 0, 1, 1};
  Tensor sample = b->upload(pick_rows(sample_all, {0, 1, 2, 0}));
  Tensor states = b->upload(pick_rows(states_all, prompt_of_row));
  const std::vector<float> t{999, 20, 500, 301};

  // The cache projects 2 prompt rows where the plain path projects 4; oneDNN's matmul blocking
  // depends on the row count, so the two agree to f32 rounding (~1e-6), not bit for bit.
  constexpr double kSame = 1e-5;
  Tensor plain = b->download(model->forward(sample, t, states));
  UNetKVCache kv = model->precompute_kv(states);
  EXPECT_EQ(kv.batch, 4);
  EXPECT_EQ(kv.distinct_prompts, 2);
  Tensor cached = b->download(model->forward(sample, t, kv));
  EXPECT_LE(rel_error(cached, plain), kSame);

  // The explicit form: distinct prompts [P, 77, D] and each row's prompt index.
  Tensor prompts = b->upload(pick_rows(states_all, {0, 1}));
  UNetKVCache kv2 = model->precompute_kv(prompts, prompt_of_row);
  EXPECT_EQ(kv2.distinct_prompts, 2);
  Tensor cached2 = b->download(model->forward(sample, t, kv2));
  EXPECT_LE(rel_error(cached2, plain), kSame);

  // Row 3 repeats row 0's sample and prompt at another timestep: the rows are independent
  // (a single-row run gives the same row), and the timestep is per row (outputs differ).
  const int64_t row = plain.numel() / 4;
  Tensor one = b->download(model->forward(b->upload(pick_rows(sample_all, {0})), {301},
                                          b->upload(pick_rows(states_all, {1}))));
  Tensor row3 = Tensor::wrap(one.shape(), DType::F32, plain.data_as<float>() + 3 * row);
  EXPECT_LE(rel_error(row3, one), 1e-5);
  Tensor row0 = Tensor::wrap(one.shape(), DType::F32, plain.data_as<float>());
  EXPECT_GT(rel_error(row0, one), 1e-2);
}

TEST(UnetBatch, OneTimestepIsBroadcastToAllRows) {
  auto b = cpu_backend("f32");
  auto model = UNet::load(kDir + "/sd1_tiny", *b);
  auto ref = SafetensorsFile::open(kDir + "/sd1_tiny/reference.safetensors");
  Tensor sample = b->upload(ref->load("sample", DType::F32));
  Tensor states = b->upload(ref->load("encoder_hidden_states", DType::F32));
  Tensor one = b->download(model->forward(sample, {500}, states));
  Tensor three = b->download(model->forward(sample, {500, 500, 500}, states));
  EXPECT_EQ(rel_error(one, three), 0.0);
}

TEST(UnetBatch, WrongInputsAreNamed) {
  auto b = cpu_backend("f32");
  auto model = UNet::load(kDir + "/sd1_tiny", *b);
  const UNetConfig& c = model->config();
  Tensor states = b->upload(Tensor::host(Shape{2, 77, c.cross_attention_dim}, DType::F32));
  Tensor odd = b->upload(Tensor::host(Shape{2, 10, 16, 4}, DType::F32));
  std::string msg = error_of([&] { model->forward(odd, {1, 2}, states); });
  EXPECT_NE(msg.find("[2, 10, 16, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("multiples of 4"), std::string::npos) << msg;

  Tensor sample = b->upload(Tensor::host(Shape{2, 16, 16, 4}, DType::F32));
  msg = error_of([&] { model->forward(sample, {1, 2, 3}, states); });
  EXPECT_NE(msg.find("3 timesteps for a batch of 2"), std::string::npos) << msg;

  Tensor bad_states = b->upload(Tensor::host(Shape{2, 77, 7}, DType::F32));
  msg = error_of([&] { model->forward(sample, {1, 2}, bad_states); });
  EXPECT_NE(msg.find("[2, 77, 7]"), std::string::npos) << msg;

  UNetKVCache kv = model->precompute_kv(states.slice0(0, 1));
  msg = error_of([&] { model->forward(sample, {1, 2}, kv); });
  EXPECT_NE(msg.find("K/V cache is for 1 batch rows"), std::string::npos) << msg;
  Tensor temb = model->time_embedding({5}, 1);
  msg = error_of([&] { model->forward(sample, temb, model->precompute_kv(states)); });
  EXPECT_NE(msg.find("time embedding [1, 64]"), std::string::npos) << msg;
  msg = error_of([&] { model->precompute_kv(states, {0, 2}); });
  EXPECT_NE(msg.find("row_prompt entry 2"), std::string::npos) << msg;
}

// ---- loading errors --------------------------------------------------------------------------

class UnetLoad : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_unet_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static const std::string& src_dir() {
    static const std::string d = kDir + "/sd1_tiny/unet";
    return d;
  }
  static nlohmann::json config() {
    std::ifstream f(src_dir() + "/config.json");
    return nlohmann::json::parse(f);
  }
  void write_config(const nlohmann::json& j) { std::ofstream(dir_ / "config.json") << j.dump(); }
  void copy_weights() {
    fs::copy_file(src_dir() + "/diffusion_pytorch_model.safetensors",
                  dir_ / "diffusion_pytorch_model.safetensors",
                  fs::copy_options::overwrite_existing);
  }
  std::map<std::string, Tensor> tensors() {
    file_ = SafetensorsFile::open(src_dir() + "/diffusion_pytorch_model.safetensors");
    std::map<std::string, Tensor> t;
    for (const auto& e : file_->entries()) t[e.name] = file_->view(e.name);
    return t;
  }
  std::string load_error() {
    auto b = cpu_backend("f32");
    return error_of([&] { UNet::load(dir_.string(), *b); });
  }

  fs::path dir_;
  std::unique_ptr<SafetensorsFile> file_;
};

TEST_F(UnetLoad, Fp16VariantFileNameLoads) {
  auto b = cpu_backend("f32");
  write_config(config());
  fs::copy_file(src_dir() + "/diffusion_pytorch_model.safetensors",
                dir_ / "diffusion_pytorch_model.fp16.safetensors");
  auto model = UNet::load(dir_.string(), *b);
  EXPECT_EQ(model->config().num_heads, (std::vector<int>{2, 2, 2}));
  EXPECT_EQ(model->num_transformer_layers(), 2 * 2 + 1 + 3 * 2);
  EXPECT_EQ(model->num_kv_entries(), model->num_transformer_layers());
}

// The reference layouts derived from SD's: BK-SDM-Tiny from SD 1.5, SDXS-512 from SD 2.1.
TEST(UnetReferenceConfigs, TinyLayoutsDropTheInnermostStage) {
  const UNetConfig tiny = reference_unet_config("bk-sdm-tiny");
  EXPECT_EQ(tiny.down_block_types, std::vector<std::string>(3, "CrossAttnDownBlock2D"));
  EXPECT_EQ(tiny.up_block_types, std::vector<std::string>(3, "CrossAttnUpBlock2D"));
  EXPECT_EQ(tiny.block_out_channels, (std::vector<int>{320, 640, 1280}));
  EXPECT_FALSE(tiny.has_mid_block);
  const UNetConfig sdxs = reference_unet_config("sdxs-512");
  EXPECT_EQ(sdxs.down_block_types, tiny.down_block_types);
  EXPECT_EQ(sdxs.up_block_types, tiny.up_block_types);
  EXPECT_EQ(sdxs.block_out_channels, tiny.block_out_channels);
  EXPECT_EQ(sdxs.layers_per_block, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(sdxs.num_heads, (std::vector<int>{1, 10, 20}));
  EXPECT_EQ(sdxs.only_cross_attention, (std::vector<bool>{true, false, false}));
  EXPECT_EQ(sdxs.cross_attention_dim, 1024);
  EXPECT_TRUE(sdxs.use_linear_projection);
  EXPECT_FALSE(sdxs.has_mid_block);
  for (const std::string& arch : reference_unet_archs())
    EXPECT_NO_THROW(reference_unet_config(arch).validate(arch)) << arch;
  EXPECT_NE(error_of([] { reference_unet_config("sd3"); }).find("sdxs-512"), std::string::npos);
}

// SDXS-512-0.9's layout: the first stage's attn1 is a second cross-attention, so its layers take
// two K/V entries each (one down layer, two up layers), and its attn1 K/V are [16, 40].
TEST(UnetOnlyCross, FirstStageLayersTakeTwoKvEntries) {
  auto b = cpu_backend("f32");
  auto model = UNet::load(kDir + "/sdxs_like", *b);
  EXPECT_EQ(model->config().only_cross_attention, (std::vector<bool>{true, false, false}));
  EXPECT_EQ(model->num_transformer_layers(), 3 + 3 * 2);
  EXPECT_EQ(model->num_kv_entries(), 3 + 3 * 2 + 3);
  Tensor host = Tensor::host(Shape{1, 77, 40}, DType::F32);
  std::fill_n(host.data_as<float>(), host.numel(), 0.5f);
  UNetKVCache kv = model->precompute_kv(b->upload(host));
  ASSERT_EQ(kv.k.size(), 12u);
  EXPECT_EQ(kv.k[0].shape(), (Shape{1, 77, 16}));  // attn1 of down_blocks.0 (1 head of 16)
  EXPECT_EQ(kv.k[1].shape(), (Shape{1, 77, 16}));  // its attn2
}

TEST_F(UnetLoad, MissingTensorIsNamed) {
  auto t = tensors();
  ASSERT_EQ(t.erase("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight"), 1u);
  write_config(config());
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = load_error();
  EXPECT_NE(msg.find("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST_F(UnetLoad, MisshapedTensorNamesBothShapes) {
  auto t = tensors();
  t["down_blocks.1.resnets.0.conv_shortcut.weight"] = Tensor::host(Shape{24, 8, 1, 1}, DType::F16);
  write_config(config());
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = load_error();
  EXPECT_NE(msg.find("down_blocks.1.resnets.0.conv_shortcut.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[24, 8, 1, 1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[24, 16, 1, 1]"), std::string::npos) << msg;
}

TEST_F(UnetLoad, ConfigNotMatchingTheWeights) {
  // The SD 1.x fixture uses conv 1x1 projections; a config saying linear expects [out, in].
  auto j = config();
  j["use_linear_projection"] = true;
  write_config(j);
  copy_weights();
  std::string msg = load_error();
  EXPECT_NE(msg.find("down_blocks.0.attentions.0.proj_in.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 16]"), std::string::npos) << msg;

  // No mid block: the file has tensors the config does not use.
  j = config();
  j["mid_block_type"] = nullptr;
  write_config(j);
  msg = load_error();
  EXPECT_NE(msg.find("unexpected tensor 'mid_block."), std::string::npos) << msg;

  // only_cross_attention: attn1's K/V take the text context (24 wide here), the file's 16.
  j = config();
  j["only_cross_attention"] = true;
  write_config(j);
  msg = load_error();
  EXPECT_NE(msg.find("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("[16, 24]"), std::string::npos) << msg;
}

TEST_F(UnetLoad, UnsupportedConfigOptionsAreNamed) {
  copy_weights();
  const std::vector<std::pair<const char*, nlohmann::json>> options = {
      {"class_embed_type", "timestep"},
      {"addition_embed_type", "text_time"},
      {"time_cond_proj_dim", 256},
      {"resnet_time_scale_shift", "scale_shift"},
      {"num_attention_heads", 8},
      {"only_cross_attention", nlohmann::json::parse("[true, false]")},
      {"only_cross_attention", "yes"},
      {"dual_cross_attention", true},
      {"time_embedding_type", "fourier"},
      {"center_input_sample", true},
      {"downsample_padding", 0},
      {"act_fn", "gelu"},
      {"mid_block_type", "UNetMidBlock2DSimpleCrossAttn"},
      {"transformer_layers_per_block", nlohmann::json::parse("[[1, 2], [1, 2], [1, 2]]")},
  };
  for (const auto& [key, value] : options) {
    auto j = config();
    j[key] = value;
    write_config(j);
    std::string msg = load_error();
    EXPECT_NE(msg.find(std::string("'") + key + "'"), std::string::npos) << key << ": " << msg;
  }
  auto j = config();
  j["down_block_types"][1] = "AttnDownBlock2D";
  write_config(j);
  std::string msg = load_error();
  EXPECT_NE(msg.find("down block type 'AttnDownBlock2D'"), std::string::npos) << msg;
  j = config();
  j["up_block_types"][0] = "SimpleCrossAttnUpBlock2D";
  write_config(j);
  msg = load_error();
  EXPECT_NE(msg.find("up block type 'SimpleCrossAttnUpBlock2D'"), std::string::npos) << msg;
  j = config();
  j["attention_head_dim"] = nlohmann::json::parse("[2, 2]");
  write_config(j);
  msg = load_error();
  EXPECT_NE(msg.find("'attention_head_dim'"), std::string::npos) << msg;
  j = config();
  j["_class_name"] = "AutoencoderKL";
  write_config(j);
  msg = load_error();
  EXPECT_NE(msg.find("AutoencoderKL"), std::string::npos) << msg;
}

TEST_F(UnetLoad, MissingFilesAreExplained) {
  std::string msg = load_error();
  EXPECT_NE(msg.find("no config.json"), std::string::npos) << msg;
  write_config(config());
  msg = load_error();
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
  std::ofstream(dir_ / "diffusion_pytorch_model.bin") << "pickle";
  msg = load_error();
  EXPECT_NE(msg.find("convert them to .safetensors"), std::string::npos) << msg;
  std::ofstream(dir_ / "config.json") << "{ not json";
  copy_weights();
  msg = load_error();
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  auto b = cpu_backend("f32");
  msg = error_of([&] { UNet::load((dir_ / "nope").string(), *b); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sd
