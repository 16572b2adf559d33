// `--lora PATH[:SCALE]` on the CLI, on the tiny stream model: a kohya LoRA written here for that
// model's UNet and text encoder (every attention q/k/v/out and text q_proj) changes the output;
// scale 0 gives the output without LoRA bit for bit; a LoRA for another model fails with a
// message naming the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli_stream_model.h"
#include "core/hash_random.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/unet_hash_weights.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

class CliLora : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_lora");
    write_lora();
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  // kohya-format LoRA (rank 2, alpha 1) on the q/k/v/out projections of every UNet attention
  // and the text encoder's q_proj, with shapes read from the model's own files.
  static void write_lora() {
    std::map<std::string, Tensor> t;
    auto add = [&](const std::string& prefix, const std::string& module, const Shape& w) {
      std::string key = prefix + module;
      for (char& c : key)
        if (c == '.') c = '_';
      t[key + ".lora_down.weight"] = hash_host_tensor(key + "d", {2, w[1]}, 0.5f);
      t[key + ".lora_up.weight"] = hash_host_tensor(key + "u", {w[0], 2}, 0.5f);
      Tensor alpha = Tensor::host(Shape{}, DType::F32);
      alpha.data_as<float>()[0] = 1.f;
      t[key + ".alpha"] = alpha;
    };
    auto unet = SafetensorsFile::open(
        (root_ / "model" / "unet" / "diffusion_pytorch_model.safetensors").string());
    int n = 0;
    for (const SafetensorsEntry& e : unet->entries())
      for (const char* p : {".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight"})
        if (e.name.size() > strlen(p) && e.name.ends_with(p)) {
          add("lora_unet_", e.name.substr(0, e.name.size() - 7), e.shape);
          ++n;
        }
    ASSERT_GT(n, 0);
    auto text =
        SafetensorsFile::open((root_ / "model" / "text_encoder" / "model.safetensors").string());
    const std::string q = "text_model.encoder.layers.0.self_attn.q_proj";
    add("lora_te_", q, text->entry(q + ".weight").shape);
    write_safetensors((root_ / "style.safetensors").string(), t);
    // A LoRA whose module exists nowhere in this model.
    std::map<std::string, Tensor> other;
    other["lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight"] =
        Tensor::host({2, 8}, DType::F32);
    other["lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight"] =
        Tensor::host({8, 2}, DType::F32);
    write_safetensors((root_ / "other.safetensors").string(), other);
  }

  static std::string run(const std::string& out, const std::string& extra, int code = 0) {
    const RunResult r = run_cli(
        "img2img --model " + quote((root_ / "model").string()) + " --prompt 'a cat' --dtype f32 " +
        "--taesd " + quote((fs::path(SD_FIXTURE_DIR) / "taesd" / "tiny").string()) + " --input " +
        quote((fs::path(SD_FIXTURE_DIR) / "stream" / "frames" / "frame_00.png").string()) +
        " --width 64 --height 64 --output " + quote((root_ / out).string()) + " " + extra);
    EXPECT_EQ(r.code, code) << r.output;
    return r.output;
  }
  static Image image(const std::string& name) { return read_image((root_ / name).string()); }

  static fs::path root_;
};

fs::path CliLora::root_;

TEST_F(CliLora, FusesAndScales) {
  run("base.png", "");
  const std::string lora = quote((root_ / "style.safetensors").string());
  const std::string out = run("styled.png", "--lora " + lora + ":1.5");
  EXPECT_NE(out.find("fused LoRA"), std::string::npos) << out;
  EXPECT_NE(out.find("1 text-encoder weights"), std::string::npos) << out;
  run("zero.png", "--lora " + lora + ":0");
  const Image base = image("base.png"), styled = image("styled.png"), zero = image("zero.png");
  EXPECT_EQ(base.rgb, zero.rgb) << "scale 0 must leave the model unchanged";
  EXPECT_NE(base.rgb, styled.rgb) << "the LoRA must change the output";
}

TEST_F(CliLora, ForeignLoraFailsWithItsName) {
  const std::string out =
      run("x.png", "--lora " + quote((root_ / "other.safetensors").string()), 1);
  EXPECT_NE(out.find("other.safetensors"), std::string::npos) << out;
  EXPECT_NE(out.find("match no weight"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(root_ / "x.png"));
}

TEST_F(CliLora, InfoDescribesALoraFile) {
  const RunResult r =
      run_cli("info " + quote(std::string(SD_FIXTURE_DIR) + "/lora/sd1_kohya.safetensors"));
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("LoRA format: kohya-ss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("text encoder: 12 layers, rank 4, alpha/rank 2"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace sd
