// `streamdiff info` (the SD_CLI_PATH binary) on the committed fixtures: a single-file LDM
// checkpoint, a diffusers model folder assembled from fixture components, component folders,
// and the errors (pickles, missing paths).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "io/safetensors.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

const std::string kFixtures = SD_FIXTURE_DIR;

RunResult run_info(const std::string& path) {
  return run_cli("info " + quote(path));
}

// "1,234,567" as info prints parameter counts.
std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0 && digits[i - 1] != '-') s += ',';
    s += digits[i];
  }
  return s;
}

int64_t params_of(const std::string& safetensors) {
  auto file = SafetensorsFile::open(safetensors);
  int64_t n = 0;
  for (const auto& e : file->entries()) n += e.shape.numel();
  return n;
}

bool has(const RunResult& r, const std::string& text) {
  return r.output.find(text) != std::string::npos;
}

class CliInfo : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sd_cli_info_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(CliInfo, SingleFileLdmCheckpoint) {
  RunResult r = run_info(kFixtures + "/ldm/sd1_tiny.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "kind: single-file checkpoint (original LDM layout)")) << r.output;
  EXPECT_TRUE(has(r, "family: SD 1.x (cross-attention width 24, conv 1x1 proj_in")) << r.output;
  EXPECT_TRUE(has(r, "assumed configs: none")) << r.output;
  // The UNet part has exactly the diffusers folder's parameters, stored fp16.
  const int64_t unet =
      params_of(kFixtures + "/unet/sd1_tiny/unet/diffusion_pytorch_model.safetensors");
  EXPECT_TRUE(has(r, with_commas(unet) + " params")) << r.output;
  EXPECT_TRUE(has(r, "text_encoder")) << r.output;
  EXPECT_TRUE(has(r, "[OpenAI CLIP: cond_stage_model.transformer.*]")) << r.output;
  EXPECT_TRUE(has(r, "vae ")) << r.output;
  EXPECT_TRUE(has(r, "F16")) << r.output;
  EXPECT_TRUE(has(r, "source: tools/make_ldm_fixtures.py")) << r.output;

  r = run_info(kFixtures + "/ldm/sd2_tiny.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "family: SD 2.x")) << r.output;
  EXPECT_TRUE(has(r, "linear proj_in")) << r.output;
  EXPECT_TRUE(has(r, "[OpenCLIP: cond_stage_model.model.*]")) << r.output;
}

TEST_F(CliInfo, ModelFolderListsItsParts) {
  const fs::path model = dir_ / "model";
  fs::create_directories(model);
  fs::create_directory_symlink(kFixtures + "/unet/sd2_tiny/unet", model / "unet");
  fs::create_directory_symlink(kFixtures + "/vae/tiny/vae", model / "vae");
  fs::create_directory_symlink(kFixtures + "/clip_text/tiny/text_encoder", model / "text_encoder");
  fs::create_directory_symlink(kFixtures + "/tokenizer/sd21", model / "tokenizer");
  std::ofstream(model / "model_index.json")
      << R"({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"]})";
  RunResult r = run_info(model.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "kind: diffusers model folder (model_index.json: StableDiffusionPipeline)"))
      << r.output;
  EXPECT_TRUE(has(r, "family: unknown (cross_attention_dim 40, linear proj_in; SD 2.x-like"))
      << r.output;
  EXPECT_TRUE(has(r, "UNet2DConditionModel: diffusion_pytorch_model.safetensors")) << r.output;
  const int64_t unet =
      params_of(kFixtures + "/unet/sd2_tiny/unet/diffusion_pytorch_model.safetensors");
  EXPECT_TRUE(has(r, with_commas(unet) + " params")) << r.output;
  EXPECT_TRUE(has(r, "AutoencoderKL: diffusion_pytorch_model.fp16.safetensors")) << r.output;
  EXPECT_TRUE(has(r, "scaling_factor 0.13025")) << r.output;
  EXPECT_TRUE(has(r, "CLIPTextModel: model.safetensors")) << r.output;
  EXPECT_TRUE(has(r, "present (vocab.json, merges.txt)")) << r.output;
  EXPECT_TRUE(has(r, "MISSING (listed in model_index.json, no folder)")) << r.output;  // scheduler
  EXPECT_TRUE(has(r, "taesd         absent")) << r.output;
}

TEST_F(CliInfo, ComponentFolders) {
  RunResult r = run_info(kFixtures + "/unet/sd1_tiny/unet");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "kind: component folder")) << r.output;
  EXPECT_TRUE(has(r, "UNet2DConditionModel")) << r.output;
  EXPECT_TRUE(has(r, "cross_attention_dim 24")) << r.output;

  r = run_info(kFixtures + "/taesd/tiny");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "AutoencoderTiny")) << r.output;
  const int64_t taesd = params_of(kFixtures + "/taesd/tiny/diffusion_pytorch_model.safetensors");
  EXPECT_TRUE(has(r, with_commas(taesd) + " params")) << r.output;

  // A bare diffusers weights file is recognised by its tensor names.
  r = run_info(kFixtures + "/unet/sd1_tiny/unet/diffusion_pytorch_model.safetensors");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "kind: diffusers UNet weights")) << r.output;
}

TEST_F(CliInfo, UnsupportedCheckpointIsDescribedNotLoaded) {
  // SDXL-like: LDM UNet tensors next to conditioner.embedders.* (zeros; only names and shapes
  // matter to info).
  std::map<std::string, Tensor> t;
  t["model.diffusion_model.input_blocks.0.0.weight"] = Tensor::host(Shape{8, 4, 3, 3}, DType::F32);
  t["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] =
      Tensor::host(Shape{4}, DType::F32);
  const std::string path = (dir_ / "sdxl.safetensors").string();
  write_safetensors(path, t, {{"modelspec.architecture", "stable-diffusion-xl-v1-base"}});
  RunResult r = run_info(path);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(has(r, "not loadable")) << r.output;
  EXPECT_TRUE(has(r, "SDXL")) << r.output;
  EXPECT_TRUE(has(r, with_commas(8 * 4 * 3 * 3 + 4) + " params")) << r.output;
  EXPECT_TRUE(has(r, "modelspec.architecture: stable-diffusion-xl-v1-base")) << r.output;
}

TEST_F(CliInfo, ErrorsNameThePath) {
  const std::string ckpt = (dir_ / "model.ckpt").string();
  std::ofstream(ckpt) << "not really a pickle";
  RunResult r = run_info(ckpt);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r, "error:")) << r.output;
  EXPECT_TRUE(has(r, "Convert it to .safetensors")) << r.output;

  r = run_info((dir_ / "missing").string());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r, "does not exist")) << r.output;

  r = run_info(dir_.string());  // an empty folder
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_TRUE(has(r, "neither a diffusers model folder")) << r.output;
}

}  // namespace
}  // namespace sd
