// AutoencoderKL vs diffusers' AutoencoderKL: a tiny random-weight model with reference moments,
// samples and decodes from tools/make_vae_fixtures.py (fixtures/vae/tiny/, NHWC f32), plus the
// loader and its errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl.h"
#include "test_support.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const std::string kModel = std::string(SD_FIXTURE_DIR) + "/vae/tiny";  // a folder with vae/
const std::string kVae = kModel + "/vae";
const std::string kWeights = kVae + "/diffusion_pytorch_model.fp16.safetensors";
constexpr float kScale = 0.13025f;  // the fixture config's scaling_factor

Tensor scaled(const Tensor& t, float s) {
  Tensor out = Tensor::host(t.shape(), DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) out.data_as<float>()[i] = s * t.data_as<float>()[i];
  return out;
}

// ---- against the reference -------------------------------------------------------------------

struct RefCase {
  int height, width;
  bool has_decode;
  const char* dtype;
  double tol;
};

void PrintTo(const RefCase& c, std::ostream* os) {
  *os << c.height << "x" << c.width << " " << c.dtype << " tol " << c.tol;
}

std::string case_name(const testing::TestParamInfo<RefCase>& info) {
  return std::to_string(info.param.height) + "x" + std::to_string(info.param.width) + "_" +
         info.param.dtype;
}

class AutoencoderKLReference : public testing::TestWithParam<RefCase> {
 protected:
  void SetUp() override {
    const RefCase& c = GetParam();
    if (std::string(c.dtype) == "bf16" && !cpu_has_native_bf16())
      GTEST_SKIP() << "this CPU has no native bf16";
    backend_ = cpu_backend(c.dtype);
    model_ = AutoencoderKL::load(kVae, *backend_);
    size_ = std::to_string(c.height) + "x" + std::to_string(c.width);
    ref_ = SafetensorsFile::open(kModel + "/reference_" + size_ + ".safetensors");
  }
  Tensor input_image() {
    Tensor image = ref_->load("image", DType::F32);
    EXPECT_EQ(image.dim(1), GetParam().height);
    EXPECT_EQ(image.dim(2), GetParam().width);
    return backend_->upload(image);
  }
  void expect_close(const Tensor& got, const char* name, float scale, const char* what) {
    Tensor expect = scaled(ref_->load(name, DType::F32), scale);
    double err = rel_error(got, expect);
    EXPECT_LE(err, GetParam().tol) << what << " " << size_ << " " << GetParam().dtype;
    std::printf("  %s rel error %.3g\n", what, err);
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<AutoencoderKL> model_;
  std::unique_ptr<SafetensorsFile> ref_;
  std::string size_;
};

TEST_P(AutoencoderKLReference, EncodeMatchesDiffusers) {
  Tensor image = input_image();
  expect_close(backend_->download(model_->encode(image)), "mean", kScale, "scaled mean");
  AutoencoderKL::Moments m = model_->encode_moments(image);
  expect_close(backend_->download(m.mean), "mean", 1.f, "mean");
  expect_close(backend_->download(m.logvar), "logvar", 1.f, "logvar");
}

TEST_P(AutoencoderKLReference, SampleMatchesDiffusers) {
  Tensor noise = ref_->load("noise", DType::F32);
  Tensor sample = backend_->download(model_->encode(input_image(), noise));
  expect_close(sample, "sample", kScale, "scaled sample");
}

TEST_P(AutoencoderKLReference, DecodeMatchesDiffusers) {
  if (!GetParam().has_decode) GTEST_SKIP() << "encode-only size";
  // The fixture's latents are what diffusers' decode takes (unscaled); ours takes them scaled.
  Tensor latents = scaled(ref_->load("latents", DType::F32), kScale);
  Tensor image = backend_->download(model_->decode(backend_->upload(latents)));
  expect_close(image, "decoded", 1.f, "decoded");
}

INSTANTIATE_TEST_SUITE_P(
    AutoencoderKL, AutoencoderKLReference,
    testing::Values(RefCase{32, 32, true, "f32", 1e-4}, RefCase{24, 40, true, "f32", 1e-4},
                    RefCase{18, 30, false, "f32", 1e-4}, RefCase{32, 32, true, "bf16", 2e-2},
                    RefCase{24, 40, true, "bf16", 2e-2}, RefCase{18, 30, false, "bf16", 2e-2}),
    case_name);

// ---- loading ---------------------------------------------------------------------------------

class AutoencoderKLLoad : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_vae_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The fixture config with `key` replaced by `json_value` (raw JSON text).
  static std::string config_with(const std::string& key, const std::string& json_value) {
    std::ifstream in(kVae + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    const std::string quoted = "\"" + key + "\": ";
    size_t at = text.find(quoted);
    EXPECT_NE(at, std::string::npos) << key;
    if (at == std::string::npos) return text;
    at += quoted.size();
    size_t end = at;
    int depth = 0;
    for (; end < text.size(); ++end) {
      char ch = text[end];
      if (ch == '[') ++depth;
      if (ch == ']') --depth;
      if (depth == 0 && (ch == ',' || ch == '\n')) break;
    }
    return text.substr(0, at) + json_value + text.substr(end);
  }
  // A vae folder in dir_ with the fixture weights and the given config text.
  void make_folder(const std::string& config_text) {
    std::ofstream(dir_ / "config.json") << config_text;
    fs::copy_file(kWeights, dir_ / "diffusion_pytorch_model.fp16.safetensors");
  }
  std::string load_error() {
    auto b = cpu_backend("f32");
    return error_of([&] { AutoencoderKL::load(dir_.string(), *b); });
  }
  fs::path dir_;
};

TEST_F(AutoencoderKLLoad, ModelFolderAndVaeFolderGiveTheSameModel) {
  auto b = cpu_backend("f32");
  auto from_model = AutoencoderKL::load(kModel, *b);  // finds vae/
  auto from_vae = AutoencoderKL::load(kVae, *b);
  const AutoencoderKLConfig& c = from_model->config();
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{16, 24, 24}));
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.norm_num_groups, 8);
  EXPECT_FLOAT_EQ(c.scaling_factor, kScale);
  EXPECT_EQ(c.shift_factor, 0.f);
  EXPECT_EQ(c.downscale(), 4);
  EXPECT_NE(from_model->source().find("diffusion_pytorch_model.fp16.safetensors"),
            std::string::npos);

  Tensor z = Tensor::host(Shape{1, 3, 5, 4}, DType::F32);
  for (int64_t i = 0; i < z.numel(); ++i) z.data_as<float>()[i] = std::sin(0.7f * float(i));
  Tensor y1 = b->download(from_model->decode(b->upload(z)));
  Tensor y2 = b->download(from_vae->decode(b->upload(z)));
  EXPECT_EQ(y1.shape(), (Shape{1, 12, 20, 3}));
  EXPECT_EQ(rel_error(y1, y2), 0.0);
  // Round trip shapes: encode of the decoded image gives latents of the original size.
  EXPECT_EQ(b->download(from_vae->encode(b->upload(y1))).shape(), z.shape());
}

// shift_factor s (SD3-style configs): encode gives (mean - s) * sf, decode takes that scale back.
TEST_F(AutoencoderKLLoad, ShiftFactorIsAppliedBothWays) {
  auto b = cpu_backend("f32");
  make_folder(config_with("shift_factor", "0.25"));
  auto shifted = AutoencoderKL::load(dir_.string(), *b);
  auto plain = AutoencoderKL::load(kVae, *b);
  EXPECT_FLOAT_EQ(shifted->config().shift_factor, 0.25f);
  const float offset = 0.25f * kScale;

  Tensor image = Tensor::host(Shape{1, 16, 24, 3}, DType::F32);
  for (int64_t i = 0; i < image.numel(); ++i)
    image.data_as<float>()[i] = std::sin(0.31f * float(i));
  Tensor z_plain = b->download(plain->encode(b->upload(image)));
  Tensor z_shifted = b->download(shifted->encode(b->upload(image)));
  Tensor expect = Tensor::host(z_plain.shape(), DType::F32);
  for (int64_t i = 0; i < expect.numel(); ++i)
    expect.data_as<float>()[i] = z_plain.data_as<float>()[i] - offset;
  EXPECT_LE(rel_error(z_shifted, expect), 1e-6);

  Tensor y_shifted = b->download(shifted->decode(b->upload(z_shifted)));
  Tensor y_plain = b->download(plain->decode(b->upload(z_plain)));
  EXPECT_LE(rel_error(y_shifted, y_plain), 1e-5);
}

TEST_F(AutoencoderKLLoad, PlainWeightsFileName) {
  auto b = cpu_backend("f32");
  fs::copy_file(kVae + "/config.json", dir_ / "config.json");
  fs::copy_file(kWeights, dir_ / "diffusion_pytorch_model.safetensors");
  auto model = AutoencoderKL::load(dir_.string(), *b);
  EXPECT_NE(model->source().find("diffusion_pytorch_model.safetensors"), std::string::npos);
}

TEST_F(AutoencoderKLLoad, MissingTensorIsNamed) {
  auto src = SafetensorsFile::open(kWeights);
  std::map<std::string, Tensor> t;
  for (const auto& e : src->entries()) t[e.name] = src->view(e.name);
  ASSERT_EQ(t.erase("decoder.mid_block.attentions.0.to_v.bias"), 1u);
  fs::copy_file(kVae + "/config.json", dir_ / "config.json");
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = load_error();
  EXPECT_NE(msg.find("missing tensor 'decoder.mid_block.attentions.0.to_v.bias'"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
}

TEST_F(AutoencoderKLLoad, ConfigWithMoreLayersNamesTheMissingTensor) {
  make_folder(config_with("layers_per_block", "2"));
  std::string msg = load_error();
  EXPECT_NE(msg.find("missing tensor 'encoder.down_blocks.0.resnets.1.norm1.weight'"),
            std::string::npos)
      << msg;
}

TEST_F(AutoencoderKLLoad, WrongShapeNamesTensorAndShapes) {
  make_folder(config_with("block_out_channels", "[16, 24, 32]"));
  std::string msg = load_error();
  EXPECT_NE(msg.find("encoder.down_blocks.2.resnets.0.conv1.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[24, 24, 3, 3]"), std::string::npos) << msg;  // in the file
  EXPECT_NE(msg.find("[32, 24, 3, 3]"), std::string::npos) << msg;  // the config's
}

TEST_F(AutoencoderKLLoad, UnusedTensorIsAnError) {
  make_folder(config_with("mid_block_add_attention", "false"));
  std::string msg = load_error();
  EXPECT_NE(msg.find("unexpected tensor 'decoder.mid_block.attentions.0."), std::string::npos)
      << msg;
}

TEST_F(AutoencoderKLLoad, UnsupportedConfigsAreRejected) {
  make_folder(config_with(
      "up_block_types", "[\"UpDecoderBlock2D\", \"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\"]"));
  std::string msg = load_error();
  EXPECT_NE(msg.find("AttnUpDecoderBlock2D"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;

  fs::remove_all(dir_);
  fs::create_directories(dir_);
  make_folder(config_with("latents_mean", "[0.1, 0.2, 0.3, 0.4]"));
  msg = load_error();
  EXPECT_NE(msg.find("latents_mean"), std::string::npos) << msg;

  fs::remove_all(dir_);
  fs::create_directories(dir_);
  make_folder(config_with("norm_num_groups", "5"));
  msg = load_error();
  EXPECT_NE(msg.find("norm_num_groups 5"), std::string::npos) << msg;
}

TEST_F(AutoencoderKLLoad, MissingFilesAreNamed) {
  std::string msg = load_error();  // empty folder
  EXPECT_NE(msg.find("has no config.json"), std::string::npos) << msg;
  fs::copy_file(kVae + "/config.json", dir_ / "config.json");
  msg = load_error();
  EXPECT_NE(msg.find("diffusion_pytorch_model.fp16.safetensors"), std::string::npos) << msg;
  auto b = cpu_backend("f32");
  msg = error_of([&] { AutoencoderKL::load((dir_ / "nope").string(), *b); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST_F(AutoencoderKLLoad, BadInputShapesAreRejected) {
  auto b = cpu_backend("f32");
  auto model = AutoencoderKL::load(kVae, *b);
  Tensor gray = b->upload(Tensor::host(Shape{1, 16, 16, 1}, DType::F32));
  EXPECT_NE(error_of([&] { model->encode(gray); }).find("[1, 16, 16, 1]"), std::string::npos);
  Tensor z8 = b->upload(Tensor::host(Shape{1, 4, 4, 8}, DType::F32));
  EXPECT_NE(error_of([&] { model->decode(z8); }).find("[1, 4, 4, 8]"), std::string::npos);
  Tensor image = b->upload(Tensor::host(Shape{1, 16, 16, 3}, DType::F32));
  Tensor bad_noise = Tensor::host(Shape{1, 3, 4, 4}, DType::F32);
  EXPECT_NE(error_of([&] { model->encode(image, bad_noise); }).find("[1, 4, 4, 4]"),
            std::string::npos);
}

}  // namespace
}  // namespace sd
