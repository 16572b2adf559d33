// LoRA fusing vs diffusers (tools/make_lora_fixtures.py: load_lora_weights + fuse_lora on the
// tiny SD 1.x / 2.x UNets and a tiny quick-GELU text encoder), in the diffusers/PEFT and kohya
// formats (kohya with diffusers and with LDM module names), plus un-fuse / re-fuse exactness,
// several adapters, and the errors for files that do not fit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "core/host_gemm.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/lora.h"
#include "models/unet.h"
#include "models/unet_blocks.h"
#include "test_support.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const std::string kFix = std::string(SD_FIXTURE_DIR);
const std::string kLora = kFix + "/lora";

class LoraTest : public testing::Test {
 protected:
  void SetUp() override {
    backend_ = cpu_backend("f32");
    ref_ = SafetensorsFile::open(kLora + "/reference.safetensors");
  }
  std::unique_ptr<UNet> unet(const std::string& family) {
    return UNet::load(kFix + "/unet/" + family + "_tiny", *backend_);
  }
  std::unique_ptr<ClipTextModel> text() {
    return ClipTextModel::load(kLora + "/text_encoder", *backend_);
  }
  Tensor ref(const std::string& name) { return ref_->load(name, DType::F32); }
  Tensor run_unet(UNet& u, const std::string& family) {
    const Tensor t = ref(family + ".timesteps");
    std::vector<float> steps(t.data_as<float>(), t.data_as<float>() + t.numel());
    const Tensor x = backend_->upload(ref(family + ".sample"));
    const Tensor ctx = backend_->upload(ref(family + ".encoder_hidden_states"));
    return backend_->download(u.forward(x, steps, ctx));
  }
  Tensor run_text(ClipTextModel& m) {
    const Tensor f = ref("ids");
    std::vector<int> ids(f.data_as<float>(), f.data_as<float>() + f.numel());
    return m.forward_to_host(ids, int(f.dim(0)));
  }
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<SafetensorsFile> ref_;
};

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

TEST(LoraGemm, MatchesReference) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n;
  const int64_t M = 37, N = 53, K = 5;
  std::vector<float> A(M * K), B(K * N), C(M * N, 1.f), R(M * N, 1.f);
  for (float& v : A) v = n(rng);
  for (float& v : B) v = n(rng);
  gemm_f32(M, N, K, 0.5f, A.data(), B.data(), 2.f, C.data());
  gemm_f32_reference(M, N, K, 0.5f, A.data(), B.data(), 2.f, R.data());
  const Tensor c = Tensor::wrap({M, N}, DType::F32, C.data());
  const Tensor r = Tensor::wrap({M, N}, DType::F32, R.data());
  EXPECT_LT(rel_error(c, r), 1e-6);
}

TEST_F(LoraTest, ReadsTheFormats) {
  const LoraFile d = LoraFile::load(kLora + "/sd1_diffusers.safetensors");
  const LoraFile k = LoraFile::load(kLora + "/sd1_kohya.safetensors");
  EXPECT_EQ(d.format(), LoraFormat::kDiffusers);
  EXPECT_EQ(k.format(), LoraFormat::kKohya);
  EXPECT_GT(d.count(LoraPart::kUNet), 50);
  EXPECT_EQ(d.count(LoraPart::kTextEncoder), 12);  // 2 layers x q, k, v, out, fc1, fc2
  EXPECT_EQ(d.count(LoraPart::kUNet), k.count(LoraPart::kUNet));
  EXPECT_EQ(d.count(LoraPart::kTextEncoder), k.count(LoraPart::kTextEncoder));
  for (const LoraFile* f : {&d, &k})
    for (const LoraFileLayer& l : f->layers()) {
      EXPECT_EQ(l.layer.rank(), 4) << l.module;
      EXPECT_FLOAT_EQ(l.layer.ratio, 2.f) << l.module;  // alpha 8 / rank 4, from either source
    }
}

struct FuseCase {
  const char* file;    // fixture stem
  const char* family;  // sd1 / sd2
  const char* ref;     // reference stem (kohya_ldm has kohya's)
};

class LoraFuse : public LoraTest, public testing::WithParamInterface<FuseCase> {};

TEST_P(LoraFuse, MatchesDiffusersAndUnfusesExactly) {
  const FuseCase& c = GetParam();
  const std::string family = c.family;
  const bool with_text = family == "sd1";
  auto u = unet(family);
  auto t = with_text ? text() : nullptr;
  const Tensor base_unet = run_unet(*u, family);
  const Tensor base_text = with_text ? run_text(*t) : Tensor();
  EXPECT_LT(rel_error(base_unet, ref(family + ".base.unet")), 1e-4);

  const LoraFile lora = LoraFile::load(kLora + "/" + c.file + ".safetensors");
  for (const char* scale : {"1p0", "0p7"}) {  // fuse, then re-fuse with another scale
    const float s = std::string(scale) == "1p0" ? 1.f : 0.7f;
    const LoraFuseReport r = fuse_lora(lora, s, u.get(), t.get());
    EXPECT_TRUE(r.unmatched.empty());
    EXPECT_EQ(r.unet_layers, lora.count(LoraPart::kUNet));
    EXPECT_EQ(r.text_layers, lora.count(LoraPart::kTextEncoder));
    const std::string key = std::string(c.ref) + ".s" + scale;
    const double eu = rel_error(run_unet(*u, family), ref(key + ".unet"));
    EXPECT_LT(eu, 1e-4) << key;
    RecordProperty(key + ".unet_rel_error", std::to_string(eu));
    if (with_text) {
      const double et = rel_error(run_text(*t), ref(key + ".text"));
      EXPECT_LT(et, 1e-4) << key;
      RecordProperty(key + ".text_rel_error", std::to_string(et));
    }
    EXPECT_EQ(u->lora_targets().fused().size(), 1u);
  }
  unfuse_lora(u.get(), t.get());
  EXPECT_TRUE(u->lora_targets().fused().empty());
  EXPECT_TRUE(bit_equal(run_unet(*u, family), base_unet)) << "unfuse must restore the UNet";
  if (with_text) {
    EXPECT_TRUE(bit_equal(run_text(*t), base_text)) << "and the text encoder";
  }
}

INSTANTIATE_TEST_SUITE_P(Lora, LoraFuse,
                         testing::Values(FuseCase{"sd1_diffusers", "sd1", "sd1_diffusers"},
                                         FuseCase{"sd1_kohya", "sd1", "sd1_kohya"},
                                         FuseCase{"sd1_kohya_ldm", "sd1", "sd1_kohya"},
                                         FuseCase{"sd2_diffusers", "sd2", "sd2_diffusers"}),
                         [](const testing::TestParamInfo<FuseCase>& i) {
                           return std::string(i.param.file);
                         });

TEST_F(LoraTest, TwoAdaptersAddUpAndUnfuseSeparately) {
  auto u = unet("sd1");
  const LoraFile lora = LoraFile::load(kLora + "/sd1_diffusers.safetensors");
  fuse_lora(lora, 0.5f, u.get(), nullptr, true, "a");
  fuse_lora(lora, 0.5f, u.get(), nullptr, true, "b");
  EXPECT_EQ(u->lora_targets().fused(), (std::vector<std::string>{"a", "b"}));
  EXPECT_LT(rel_error(run_unet(*u, "sd1"), ref("sd1_diffusers.s1p0.unet")), 1e-4);
  unfuse_lora(u.get(), nullptr, "b");
  fuse_lora(lora, 0.2f, u.get(), nullptr, true, "c");
  fuse_lora(lora, 0.5f, u.get(), nullptr, true, "c");  // replaces c's scale
  EXPECT_LT(rel_error(run_unet(*u, "sd1"), ref("sd1_diffusers.s1p0.unet")), 1e-4);
  unfuse_lora(u.get(), nullptr, "a");
  unfuse_lora(u.get(), nullptr, "c");
  EXPECT_LT(rel_error(run_unet(*u, "sd1"), ref("sd1.base.unet")), 1e-4);
  EXPECT_NE(error_of([&] { unfuse_lora(u.get(), nullptr, "nope"); }), "");
}

// ---- bad input ---------------------------------------------------------------------------------

TEST_F(LoraTest, UnmatchedKeysAreReportedNeverIgnored) {
  auto u = unet("sd1");
  const LoraFile lora = LoraFile::load(kLora + "/sd1_kohya.safetensors");
  // No text encoder given: its 12 layers match nothing.
  const std::string e = error_of([&] { fuse_lora(lora, 1.f, u.get(), nullptr); });
  EXPECT_NE(e.find("12 of"), std::string::npos) << e;
  EXPECT_NE(e.find("text encoder: text_model_encoder_layers_0"), std::string::npos) << e;
  EXPECT_TRUE(u->lora_targets().fused().empty()) << "nothing fused after the error";
  const LoraFuseReport r = fuse_lora(lora, 1.f, u.get(), nullptr, true);
  EXPECT_EQ(r.unmatched.size(), 12u);
  EXPECT_EQ(r.unet_layers, lora.count(LoraPart::kUNet));
}

TEST_F(LoraTest, LoraForAnotherFamilyFails) {
  auto u = unet("sd1");
  const LoraFile sd2 = LoraFile::load(kLora + "/sd2_diffusers.safetensors");
  const std::string e = error_of([&] { fuse_lora(sd2, 1.f, u.get(), nullptr); });
  EXPECT_TRUE(e.find("another model family") != std::string::npos) << e;
  EXPECT_TRUE(u->lora_targets().fused().empty());
  EXPECT_TRUE(bit_equal(run_unet(*u, "sd1"), run_unet(*unet("sd1"), "sd1")));
}

class LoraBadFile : public LoraTest {
 protected:
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::map<std::string, Tensor>& t) {
    fs::create_directories(dir_);
    const std::string p = dir_ + "/" + name;
    write_safetensors(p, t);
    return p;
  }
  std::string dir_ = fs::temp_directory_path().string() + "/sd_lora_" + std::to_string(getpid());
};

TEST_F(LoraBadFile, Errors) {
  const Tensor down = Tensor::host({4, 8}, DType::F32), up = Tensor::host({8, 4}, DType::F32);
  const std::string m = "unet.down_blocks.0.attentions.0.proj_in";
  EXPECT_NE(error_of([&] {
              LoraFile::load(write("a.safetensors", {{m + ".lora_A.weight", down}}));
            }).find("no matching up"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              LoraFile::load(write("b.safetensors", {{m + ".lora_A.weight", down},
                                                     {m + ".lora_B.weight", up},
                                                     {m + ".dora_scale", up}}));
            }).find("not supported"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] {
        LoraFile::load(write("c.safetensors", {{"lora_te2_text_model_x.lora_down.weight", down},
                                               {"lora_te2_text_model_x.lora_up.weight", up}}));
      }).find("second text encoder"),
      std::string::npos);
  EXPECT_NE(error_of([&] {
              LoraFile::load(write("d.safetensors", {{"weird.key", down}}));
            }).find("weird.key"),
            std::string::npos);
  EXPECT_NE(error_of([&] { LoraFile::load(dir_ + "/missing.safetensors"); }).find("missing"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              LoraFile::load(write("e.ckpt", {{"x", down}}));
            }).find("safetensors"),
            std::string::npos);
  // Truncated file.
  const std::string good = kLora + "/sd2_diffusers.safetensors";
  const std::string cut = dir_ + "/cut.safetensors";
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_NE(error_of([&] { LoraFile::load(cut); }).find("cut.safetensors"), std::string::npos);
}

TEST_F(LoraTest, BorrowedSourceCannotFuse) {
  // A UNet built from a weight source it does not keep has no original weights to fuse from.
  const std::string dir = kFix + "/unet/sd1_tiny/unet";
  SafetensorsUNetWeights weights(dir + "/diffusion_pytorch_model.safetensors");
  auto u = UNet::create(UNetConfig::from_json_file(dir + "/config.json"), weights, *backend_);
  const LoraFile lora = LoraFile::load(kLora + "/sd1_diffusers.safetensors");
  EXPECT_NE(error_of([&] { fuse_lora(lora, 1.f, u.get(), nullptr, true); }).find("no source"),
            std::string::npos);
}

}  // namespace
}  // namespace sd
