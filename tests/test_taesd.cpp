// TAESD vs diffusers' AutoencoderTiny: random-weight models (tiny and full-size configs) with
// reference latents and images from tools/make_fixtures.py (fixtures/taesd/, NHWC f32), plus the
// loaders (diffusers folder, single file, original taesd_encoder/decoder files) and their errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/taesd.h"
#include "test_support.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const std::string kDir = std::string(SD_FIXTURE_DIR) + "/taesd";

// Rows and columns 0, s, 2s, ... of an NHWC image (the fixture stores 512x512 images that way).
Tensor subsample(const Tensor& img, int s) {
  const int64_t n = img.dim(0), h = img.dim(1), w = img.dim(2), c = img.dim(3);
  const int64_t ho = (h + s - 1) / s, wo = (w + s - 1) / s;
  Tensor out = Tensor::host(Shape{n, ho, wo, c}, DType::F32);
  const float* src = img.data_as<float>();
  float* dst = out.data_as<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t y = 0; y < ho; ++y)
      for (int64_t x = 0; x < wo; ++x)
        for (int64_t k = 0; k < c; ++k)
          dst[((b * ho + y) * wo + x) * c + k] = src[((b * h + y * s) * w + x * s) * c + k];
  return out;
}

// ---- against the reference -------------------------------------------------------------------

struct RefCase {
  const char* model;  // fixture folder
  int height, width;
  const char* dtype;
  double tol;
};

void PrintTo(const RefCase& c, std::ostream* os) {
  *os << c.model << " " << c.height << "x" << c.width << " " << c.dtype << " tol " << c.tol;
}

std::string case_name(const testing::TestParamInfo<RefCase>& info) {
  const RefCase& c = info.param;
  return std::string(c.model) + "_" + std::to_string(c.height) + "x" + std::to_string(c.width) +
         "_" + c.dtype;
}

class TaesdReference : public testing::TestWithParam<RefCase> {
 protected:
  void SetUp() override {
    const RefCase& c = GetParam();
    if (std::string(c.dtype) == "bf16" && !cpu_has_native_bf16())
      GTEST_SKIP() << "this CPU has no native bf16";
    backend_ = cpu_backend(c.dtype);
    model_ = Taesd::load(kDir + "/" + c.model, *backend_);
    size_ = std::to_string(c.height) + "x" + std::to_string(c.width);
    ref_ = SafetensorsFile::open(kDir + "/" + c.model + "/reference_" + size_ + ".safetensors");
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Taesd> model_;
  std::unique_ptr<SafetensorsFile> ref_;
  std::string size_;
};

TEST_P(TaesdReference, EncoderMatchesDiffusers) {
  const RefCase& c = GetParam();
  Image img = read_image(kDir + "/input_" + size_ + ".png");
  ASSERT_EQ(img.width, c.width);
  ASSERT_EQ(img.height, c.height);
  Tensor latents = backend_->download(model_->encode(backend_->upload(image_to_tensor(img))));
  Tensor expect = ref_->load("encoded", DType::F32);
  double err = rel_error(latents, expect);
  EXPECT_LE(err, c.tol) << "encoder " << c.model << " " << size_ << " " << c.dtype;
  std::printf("  encoder rel error %.3g\n", err);
}

TEST_P(TaesdReference, DecoderMatchesDiffusers) {
  const RefCase& c = GetParam();
  Tensor latents = ref_->load("latents", DType::F32);
  Tensor image = backend_->download(model_->decode(backend_->upload(latents)));
  ASSERT_EQ(image.shape(), (Shape{1, c.height, c.width, 3}));
  int stride = std::stoi(ref_->metadata().at("decoded_stride"));
  Tensor expect = ref_->load("decoded", DType::F32);
  double err = rel_error(subsample(image, stride), expect);
  EXPECT_LE(err, c.tol) << "decoder " << c.model << " " << size_ << " " << c.dtype;
  std::printf("  decoder rel error %.3g\n", err);
}

INSTANTIATE_TEST_SUITE_P(Taesd, TaesdReference,
                         testing::Values(RefCase{"tiny", 512, 512, "f32", 1e-4},
                                         RefCase{"tiny", 128, 192, "f32", 1e-4},
                                         RefCase{"full", 512, 512, "f32", 1e-4},
                                         RefCase{"tiny", 512, 512, "bf16", 2e-2},
                                         RefCase{"tiny", 128, 192, "bf16", 2e-2},
                                         RefCase{"full", 512, 512, "bf16", 2e-2}),
                         case_name);

// ---- loaders ---------------------------------------------------------------------------------

class TaesdLoad : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_taesd_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The tensors of a fixture model, renamed by `rename` (entries mapped to "" are dropped).
  static std::map<std::string, Tensor> tensors(const SafetensorsFile& f,
                                               std::string (*rename)(const std::string&)) {
    std::map<std::string, Tensor> out;
    for (const auto& e : f.entries()) {
      std::string name = rename(e.name);
      if (!name.empty()) out[name] = f.view(e.name);
    }
    return out;
  }
  static std::string same(const std::string& n) { return n; }

  // Encode + decode outputs of `model` on a small deterministic input, for comparisons.
  static std::pair<Tensor, Tensor> outputs(Backend& b, const Taesd& model) {
    Tensor x = Tensor::host(Shape{1, 32, 48, 3}, DType::F32);
    float* p = x.data_as<float>();
    for (int64_t i = 0; i < x.numel(); ++i) p[i] = std::sin(0.37f * float(i));
    Tensor z = b.download(model.encode(b.upload(x)));
    return {z, b.download(model.decode(b.upload(z)))};
  }

  void write_config(const fs::path& folder, const std::string& text) {
    std::ofstream(folder / "config.json") << text;
  }

  fs::path dir_;
};

// The original madebyollin files: encoder keys are diffusers' "encoder.layers.N..." without the
// prefix; the decoder's nn.Sequential starts with a parameterless Clamp, so its indices are
// diffusers' "decoder.layers.N..." plus one (diffusers' convert_tiny_autoencoder_to_diffusers).
std::string to_original_encoder(const std::string& n) {
  const std::string p = "encoder.layers.";
  return n.rfind(p, 0) == 0 ? n.substr(p.size()) : "";
}
std::string to_original_decoder(const std::string& n) {
  const std::string p = "decoder.layers.";
  if (n.rfind(p, 0) != 0) return "";
  std::string rest = n.substr(p.size());
  size_t dot = rest.find('.');
  return std::to_string(std::stoi(rest.substr(0, dot)) + 1) + rest.substr(dot);
}

TEST_F(TaesdLoad, OriginalFilesAndSingleFileMatchDiffusersFolder) {
  auto b = cpu_backend("f32");
  const std::string full = kDir + "/full";
  auto src = SafetensorsFile::open(full + "/diffusion_pytorch_model.safetensors");
  write_safetensors((dir_ / "taesd_encoder.safetensors").string(),
                    tensors(*src, to_original_encoder));
  write_safetensors((dir_ / "taesd_decoder.safetensors").string(),
                    tensors(*src, to_original_decoder));

  auto folder = Taesd::load(full, *b);
  auto [z_ref, y_ref] = outputs(*b, *folder);

  auto original = Taesd::load(dir_.string(), *b);  // folder with both original files
  ASSERT_TRUE(original->has_encoder() && original->has_decoder());
  auto [z1, y1] = outputs(*b, *original);
  EXPECT_EQ(rel_error(z1, z_ref), 0.0);
  EXPECT_EQ(rel_error(y1, y_ref), 0.0);

  auto single = Taesd::load(full + "/diffusion_pytorch_model.safetensors", *b);  // default config
  auto [z2, y2] = outputs(*b, *single);
  EXPECT_EQ(rel_error(z2, z_ref), 0.0);
  EXPECT_EQ(rel_error(y2, y_ref), 0.0);

  // One original file loads one half, recognised by its keys.
  fs::rename(dir_ / "taesd_decoder.safetensors", dir_ / "dec.safetensors");
  auto dec_only = Taesd::load((dir_ / "dec.safetensors").string(), *b);
  EXPECT_FALSE(dec_only->has_encoder());
  ASSERT_TRUE(dec_only->has_decoder());
  EXPECT_EQ(rel_error(b->download(dec_only->decode(b->upload(z_ref))), y_ref), 0.0);
  Tensor img = b->upload(Tensor::host(Shape{1, 16, 16, 3}, DType::F32));
  EXPECT_NE(error_of([&] { dec_only->encode(img); }).find("has no encoder"), std::string::npos);
  auto enc_only = Taesd::load((dir_ / "taesd_encoder.safetensors").string(), *b);
  EXPECT_TRUE(enc_only->has_encoder());
  EXPECT_FALSE(enc_only->has_decoder());
}

TEST_F(TaesdLoad, Fp16VariantFileName) {
  auto b = cpu_backend("f32");
  fs::copy_file(kDir + "/tiny/config.json", dir_ / "config.json");
  fs::copy_file(kDir + "/tiny/diffusion_pytorch_model.safetensors",
                dir_ / "diffusion_pytorch_model.fp16.safetensors");
  auto model = Taesd::load(dir_.string(), *b);
  auto ref = Taesd::load(kDir + "/tiny", *b);
  auto [z, y] = outputs(*b, *model);
  auto [zr, yr] = outputs(*b, *ref);
  EXPECT_EQ(rel_error(z, zr), 0.0);
  EXPECT_EQ(rel_error(y, yr), 0.0);
  EXPECT_EQ(model->config().num_encoder_blocks, (std::vector<int>{1, 2, 1, 2}));
  EXPECT_EQ(model->config().encoder_block_out_channels, (std::vector<int>{8, 8, 8, 8}));
}

TEST_F(TaesdLoad, MissingTensorIsNamed) {
  auto b = cpu_backend("f32");
  auto src = SafetensorsFile::open(kDir + "/tiny/diffusion_pytorch_model.safetensors");
  auto t = tensors(*src, same);
  ASSERT_EQ(t.erase("decoder.layers.3.conv.2.weight"), 1u);
  fs::copy_file(kDir + "/tiny/config.json", dir_ / "config.json");
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("decoder.layers.3.conv.2.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("diffusion_pytorch_model.safetensors"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, MisshapedTensorNamesBothShapes) {
  auto b = cpu_backend("f32");
  auto src = SafetensorsFile::open(kDir + "/tiny/diffusion_pytorch_model.safetensors");
  auto t = tensors(*src, same);
  ASSERT_TRUE(t.count("encoder.layers.3.conv.4.weight"));
  t["encoder.layers.3.conv.4.weight"] = Tensor::host(Shape{8, 8, 1, 1}, DType::F16);
  fs::copy_file(kDir + "/tiny/config.json", dir_ / "config.json");
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("encoder.layers.3.conv.4.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8, 8, 1, 1]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[8, 8, 3, 3]"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, TensorsNotMatchingTheConfig) {
  auto b = cpu_backend("f32");
  auto src = SafetensorsFile::open(kDir + "/tiny/diffusion_pytorch_model.safetensors");
  auto t = tensors(*src, same);
  // A bias on the stride-2 conv, which TAESD builds without one.
  t["encoder.layers.2.bias"] = Tensor::host(Shape{8}, DType::F16);
  fs::copy_file(kDir + "/tiny/config.json", dir_ / "config.json");
  write_safetensors((dir_ / "diffusion_pytorch_model.safetensors").string(), t);
  std::string msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("unexpected tensor 'encoder.layers.2.bias'"), std::string::npos) << msg;

  // The tiny weights under a config with one decoder block fewer: the final conv is expected
  // where the file has that block.
  write_config(dir_, R"({"encoder_block_out_channels": [8, 8, 8, 8],
                         "decoder_block_out_channels": [8, 8, 8, 8],
                         "num_encoder_blocks": [1, 2, 1, 2], "num_decoder_blocks": [2, 1, 2, 0]})");
  fs::copy_file(kDir + "/tiny/diffusion_pytorch_model.safetensors",
                dir_ / "diffusion_pytorch_model.safetensors", fs::copy_options::overwrite_existing);
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("'decoder.layers.13.weight'"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, ConfigDisagreeingWithWeights) {
  auto b = cpu_backend("f32");
  // The tiny weights under the default (64-channel) config: the first conv's shape differs.
  write_config(dir_, R"({"_class_name": "AutoencoderTiny"})");
  fs::copy_file(kDir + "/tiny/diffusion_pytorch_model.safetensors",
                dir_ / "diffusion_pytorch_model.safetensors");
  std::string msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("encoder.layers.0.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 3, 3, 3]"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, MissingOrBadConfig) {
  auto b = cpu_backend("f32");
  fs::copy_file(kDir + "/tiny/diffusion_pytorch_model.safetensors",
                dir_ / "diffusion_pytorch_model.safetensors");
  std::string msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;

  write_config(dir_, "{ not json");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;

  write_config(dir_, R"({"_class_name": "AutoencoderKL"})");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("AutoencoderKL"), std::string::npos) << msg;

  write_config(dir_, R"({"act_fn": "silu"})");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("act_fn"), std::string::npos) << msg;

  write_config(dir_, R"({"num_encoder_blocks": [1, 2, 1]})");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("differ in length"), std::string::npos) << msg;

  write_config(dir_, R"({"upsampling_scaling_factor": 3})");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("upsampling_scaling_factor"), std::string::npos) << msg;

  fs::remove(dir_ / "config.json");
  fs::remove(dir_ / "diffusion_pytorch_model.safetensors");
  msg = error_of([&] { Taesd::load(dir_.string(), *b); });
  EXPECT_NE(msg.find("taesd_encoder.safetensors"), std::string::npos) << msg;
  msg = error_of([&] { Taesd::load((dir_ / "nope").string(), *b); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, NotATaesdFile) {
  auto b = cpu_backend("f32");
  Tensor t = Tensor::host(Shape{2, 2}, DType::F32);
  write_safetensors((dir_ / "other.safetensors").string(), {{"some.weight", t}});
  std::string msg = error_of([&] { Taesd::load((dir_ / "other.safetensors").string(), *b); });
  EXPECT_NE(msg.find("not a TAESD checkpoint"), std::string::npos) << msg;
}

TEST_F(TaesdLoad, WrongInputShapes) {
  auto b = cpu_backend("f32");
  auto model = Taesd::load(kDir + "/tiny", *b);
  Tensor rgba = b->upload(Tensor::host(Shape{1, 16, 16, 4}, DType::F32));
  EXPECT_NE(error_of([&] { model->encode(rgba); }).find("[1, 16, 16, 4]"), std::string::npos);
  Tensor lat = b->upload(Tensor::host(Shape{1, 8, 8, 3}, DType::F32));
  EXPECT_NE(error_of([&] { model->decode(lat); }).find("[1, 8, 8, 3]"), std::string::npos);
}

}  // namespace
}  // namespace sd
