// Single-file checkpoints in the original LDM layout (fixtures from tools/make_ldm_fixtures.py:
// the committed tiny UNet / VAE / text encoders' own fp16 tensors renamed to LDM names, checked
// in Python against diffusers' convert_ldm_*_checkpoint): the single-file UNet, VAE and text
// encoder are bit-identical to the diffusers folders, family detection, and the errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/ldm_checkpoint.h"
#include "models/unet.h"
#include "test_support.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const std::string kFixtures = SD_FIXTURE_DIR;
const std::string kLdm = kFixtures + "/ldm";
const std::string kVae = kFixtures + "/vae/tiny";

int tiny_vae_blocks() {
  return int(
      AutoencoderKLConfig::from_json_file(kVae + "/vae/config.json").block_out_channels.size());
}

std::unique_ptr<Backend> cpu_f32() {
  BackendOptions o;
  o.device = "cpu";
  o.dtype = "f32";
  return make_backend(o);
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

// A scratch folder removed at the end of the test.
class LdmCheckpointFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sd_ldm_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // The tensors of `src` (as f32) with `drop` removed and `add` added, written to `name`.
  std::string rewrite(const std::string& src, const std::string& name, const std::string& drop = "",
                      const std::map<std::string, Tensor>& add = {}) const {
    auto f = SafetensorsFile::open(src);
    std::map<std::string, Tensor> tensors;
    for (const auto& e : f->entries())
      if (e.name != drop) tensors[e.name] = f->load(e.name, DType::F32);
    for (const auto& [k, v] : add) tensors[k] = v;
    write_safetensors(path(name), tensors);
    return path(name);
  }
  fs::path dir_;
};

// ---- the UNet: single file == diffusers folder -----------------------------------------------

void expect_same_unet_outputs(const std::string& model) {
  auto b = cpu_f32();
  const std::string folder = kFixtures + "/unet/" + model;
  auto ref = SafetensorsFile::open(folder + "/reference.safetensors");
  auto from_folder = UNet::load(folder, *b);
  auto ckpt = LdmCheckpoint::open(kLdm + "/" + model + ".safetensors");
  const UNetConfig config = UNetConfig::from_json_file(folder + "/unet/config.json");
  auto from_file = ckpt->load_unet(*b, &config);

  Tensor sample = b->upload(ref->load("sample", DType::F32));
  Tensor states = b->upload(ref->load("encoder_hidden_states", DType::F32));
  Tensor t = ref->load("timesteps", DType::F32);
  const std::vector<float> steps(t.data_as<float>(), t.data_as<float>() + t.numel());
  Tensor a = b->download(from_folder->forward(sample, steps, states));
  Tensor c = b->download(from_file->forward(sample, steps, states));
  EXPECT_TRUE(bit_equal(a, c)) << model << ": single-file UNet output differs from the folder's";

  // And both are diffusers' output (the UNet tests hold the tolerance; this guards the fixture).
  Tensor expect = ref->load("output", DType::F32);
  double num = 0, den = 0;
  for (int64_t i = 0; i < expect.numel(); ++i) {
    const double d = double(c.data_as<float>()[i]) - expect.data_as<float>()[i];
    num += d * d;
    den += double(expect.data_as<float>()[i]) * expect.data_as<float>()[i];
  }
  EXPECT_LE(std::sqrt(num / den), 1e-4) << model;
}

TEST(LdmCheckpointUNet, Sd1TinySingleFileEqualsFolderBitForBit) {
  expect_same_unet_outputs("sd1_tiny");
}

TEST(LdmCheckpointUNet, Sd2TinySingleFileEqualsFolderBitForBit) {
  expect_same_unet_outputs("sd2_tiny");
}

// Every tensor of the diffusers folder maps to a tensor of the single file with equal bits.
TEST(LdmCheckpointUNet, EveryDiffusersTensorMapsToItsLdmTensor) {
  for (const char* model : {"sd1_tiny", "sd2_tiny"}) {
    const std::string folder = kFixtures + "/unet/" + model + "/unet";
    const UNetConfig config = UNetConfig::from_json_file(folder + "/config.json");
    auto diffusers = SafetensorsFile::open(folder + "/diffusion_pytorch_model.safetensors");
    auto ckpt = LdmCheckpoint::open(kLdm + "/" + model + ".safetensors");
    LdmUNetWeights weights(ckpt->file(), config);
    for (const auto& e : diffusers->entries())
      EXPECT_TRUE(bit_equal(weights.get(e.name, e.shape), diffusers->load(e.name, DType::F32)))
          << model << " " << e.name;
    EXPECT_NO_THROW(weights.check_all_used());
    EXPECT_EQ(ckpt->info().unet_params, [&] {
      int64_t n = 0;
      for (const auto& e : diffusers->entries()) n += e.shape.numel();
      return n;
    }());
  }
}

// Names as diffusers' convert_ldm_unet_checkpoint assigns them for SD 1.5 (its detection key
// "output_blocks.11.0.skip_connection.weight" included).
TEST(LdmCheckpointUNet, Sd15NamesFollowDiffusersConversion) {
  const UNetConfig c = sd15_unet_config();
  const std::map<std::string, std::string> expect = {
      {"conv_in.weight", "input_blocks.0.0.weight"},
      {"time_embedding.linear_2.bias", "time_embed.2.bias"},
      {"down_blocks.0.resnets.0.norm1.weight", "input_blocks.1.0.in_layers.0.weight"},
      {"down_blocks.0.attentions.1.proj_in.weight", "input_blocks.2.1.proj_in.weight"},
      {"down_blocks.0.downsamplers.0.conv.weight", "input_blocks.3.0.op.weight"},
      {"down_blocks.1.resnets.0.conv_shortcut.bias", "input_blocks.4.0.skip_connection.bias"},
      {"down_blocks.2.downsamplers.0.conv.bias", "input_blocks.9.0.op.bias"},
      {"down_blocks.3.resnets.1.conv1.weight", "input_blocks.11.0.in_layers.2.weight"},
      {"mid_block.resnets.0.time_emb_proj.weight", "middle_block.0.emb_layers.1.weight"},
      {"mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
       "middle_block.1.transformer_blocks.0.attn2.to_k.weight"},
      {"mid_block.resnets.1.conv2.bias", "middle_block.2.out_layers.3.bias"},
      {"up_blocks.0.resnets.2.norm2.weight", "output_blocks.2.0.out_layers.0.weight"},
      {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"},
      {"up_blocks.1.attentions.0.norm.bias", "output_blocks.3.1.norm.bias"},
      {"up_blocks.1.upsamplers.0.conv.weight", "output_blocks.5.2.conv.weight"},
      {"up_blocks.3.resnets.2.conv_shortcut.weight", "output_blocks.11.0.skip_connection.weight"},
      {"up_blocks.3.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
       "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight"},
      {"conv_norm_out.weight", "out.0.weight"},
      {"conv_out.bias", "out.2.bias"}};
  for (const auto& [diffusers, ldm] : expect) EXPECT_EQ(ldm_unet_tensor_name(diffusers, c), ldm);
  EXPECT_NE(error_of([&] {
              ldm_unet_tensor_name("down_blocks.7.resnets.0.conv1.weight", c);
            }).find("no LDM name"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ldm_unet_tensor_name("add_embedding.linear_1.weight", c);
            }).find("add_embedding.linear_1.weight"),
            std::string::npos);
}

// Every parameter of the full-size SD 1.5 / SD 2.1 UNets and of the SD VAE, with the LDM name
// diffusers' converters agree on (sd_unet_names.txt / sd_vae_names.txt, written by the fixture
// tool from models built on torch's meta device).
std::vector<std::pair<std::string, std::string>> read_name_pairs(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string diffusers, ldm;
  while (in >> diffusers >> ldm) pairs.emplace_back(diffusers, ldm);
  return pairs;
}

TEST(LdmCheckpointUNet, FullSizeNamesMatchDiffusersConversion) {
  const auto pairs = read_name_pairs(kLdm + "/sd_unet_names.txt");
  ASSERT_EQ(pairs.size(), 686u);
  for (const UNetConfig& c : {sd15_unet_config(), sd21_unet_config()})
    for (const auto& [diffusers, ldm] : pairs)
      EXPECT_EQ(ldm_unet_tensor_name(diffusers, c), ldm) << diffusers;
}

TEST(LdmCheckpointVae, FullSizeNamesMatchDiffusersConversion) {
  const auto pairs = read_name_pairs(kLdm + "/sd_vae_names.txt");
  ASSERT_EQ(pairs.size(), 248u);
  const int blocks = int(AutoencoderKLConfig::stable_diffusion().block_out_channels.size());
  for (const auto& [diffusers, ldm] : pairs)
    EXPECT_EQ(ldm_vae_tensor_name(diffusers, blocks), ldm) << diffusers;
}

// ---- VAE and text encoder --------------------------------------------------------------------

TEST(LdmCheckpointVae, EveryDiffusersTensorMapsToItsLdmTensor) {
  auto diffusers = SafetensorsFile::open(kVae + "/vae/diffusion_pytorch_model.fp16.safetensors");
  for (const char* model : {"sd1_tiny", "sd2_tiny"}) {
    auto ckpt = LdmCheckpoint::open(kLdm + "/" + model + ".safetensors");
    LdmVaeWeights weights(ckpt->file(), tiny_vae_blocks());
    int reshaped = 0;
    for (const auto& e : diffusers->entries()) {
      const std::string ldm = "first_stage_model." + ldm_vae_tensor_name(e.name, tiny_vae_blocks());
      reshaped += ckpt->file().entry(ldm).shape.rank != e.shape.rank;
      EXPECT_TRUE(bit_equal(weights.get(e.name, e.shape), diffusers->load(e.name, DType::F32)))
          << model << " " << e.name;
    }
    EXPECT_EQ(reshaped, 8) << "q/k/v/proj_out of the encoder and decoder mid attention";
    EXPECT_NO_THROW(weights.check_all_used());
  }
  EXPECT_EQ(ldm_vae_tensor_name("decoder.up_blocks.0.upsamplers.0.conv.weight", 4),
            "decoder.up.3.upsample.conv.weight");
  EXPECT_EQ(ldm_vae_tensor_name("encoder.mid_block.attentions.0.to_out.0.bias", 4),
            "encoder.mid.attn_1.proj_out.bias");
  EXPECT_EQ(ldm_vae_tensor_name("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", 4),
            "encoder.down.1.block.0.nin_shortcut.weight");
}

TEST(LdmCheckpointVae, SingleFileEqualsFolderBitForBit) {
  auto b = cpu_f32();
  auto folder = AutoencoderKL::load(kVae + "/vae", *b);
  auto ckpt = LdmCheckpoint::open(kLdm + "/sd2_tiny.safetensors");
  const AutoencoderKLConfig config = AutoencoderKLConfig::from_json_file(kVae + "/vae/config.json");
  auto single = ckpt->load_vae(*b, &config);
  auto ref = SafetensorsFile::open(kVae + "/reference_24x40.safetensors");
  Tensor image = b->upload(ref->load("image", DType::F32));
  Tensor latents = b->upload(ref->load("latents", DType::F32));
  EXPECT_TRUE(bit_equal(b->download(single->encode(image)), b->download(folder->encode(image))));
  EXPECT_TRUE(
      bit_equal(b->download(single->decode(latents)), b->download(folder->decode(latents))));

  // The tiny VAE is not SD's: without a config, loading says so.
  const std::string e = error_of([&] { ckpt->load_vae(*b); });
  EXPECT_NE(e.find("unknown VAE architecture"), std::string::npos) << e;
}

TEST(LdmCheckpointVae, MisshapedRequestNamesBothShapes) {
  auto ckpt = LdmCheckpoint::open(kLdm + "/sd1_tiny.safetensors");
  LdmVaeWeights weights(ckpt->file(), tiny_vae_blocks());
  const Shape stored = ckpt->file().entry("first_stage_model.encoder.conv_in.weight").shape;
  Shape wrong = stored;
  wrong[0] += 1;
  const std::string e = error_of([&] { weights.get("encoder.conv_in.weight", wrong); });
  EXPECT_NE(e.find("first_stage_model.encoder.conv_in.weight"), std::string::npos) << e;
  EXPECT_NE(e.find(stored.str()), std::string::npos) << e;
  EXPECT_NE(e.find(wrong.str()), std::string::npos) << e;
  // Unused tensors are reported.
  LdmVaeWeights partial(ckpt->file(), tiny_vae_blocks());
  partial.get("encoder.conv_in.weight", stored);
  EXPECT_NE(error_of([&] { partial.check_all_used(); }).find("unexpected VAE tensor"),
            std::string::npos);
}

TEST(LdmCheckpointText, Sd1TextEncoderEqualsItsFolder) {
  auto b = cpu_f32();
  auto ckpt = LdmCheckpoint::open(kLdm + "/sd1_tiny.safetensors");
  auto folder = ClipTextModel::load(kFixtures + "/clip_text/tiny/text_encoder", *b);
  // The tiny encoder uses gelu; without its config an SD 1.x file implies quick_gelu.
  auto single = ckpt->load_text_encoder(*b, &folder->config());
  EXPECT_EQ(ckpt->load_text_encoder(*b)->config().hidden_act, "quick_gelu");
  EXPECT_FALSE(single->openclip_names());
  const std::vector<int> ids = {49406, 320, 1125, 49407, 12, 7};
  std::vector<int> clipped = ids;
  for (int& i : clipped) i %= single->config().vocab_size;
  EXPECT_TRUE(bit_equal(single->forward_to_host(clipped, 1), folder->forward_to_host(clipped, 1)));
}

TEST(LdmCheckpointText, Sd2TextEncoderUsesOpenClipNames) {
  auto b = cpu_f32();
  auto ckpt = LdmCheckpoint::open(kLdm + "/sd2_tiny.safetensors");
  EXPECT_TRUE(ckpt->load_text_encoder(*b)->openclip_names());
}

// ---- family detection ------------------------------------------------------------------------

TEST(LdmCheckpointFamily, TinyFixtures) {
  auto sd1 = LdmCheckpoint::open(kLdm + "/sd1_tiny.safetensors");
  EXPECT_EQ(sd1->info().family, LdmFamily::kSD1);
  EXPECT_EQ(sd1->info().cross_attention_dim, 24);
  EXPECT_FALSE(sd1->info().linear_projection);
  EXPECT_EQ(sd1->info().model_channels, 16);
  EXPECT_FALSE(sd1->info().full_size);
  EXPECT_TRUE(sd1->info().has_vae);
  EXPECT_EQ(sd1->info().text_encoder, LdmTextEncoder::kOpenAIClip);
  EXPECT_GT(sd1->info().vae_params, 0);
  EXPECT_GT(sd1->info().text_encoder_params, 0);
  EXPECT_EQ(sd1->info().other_params, 0);

  auto sd2 = LdmCheckpoint::open(kLdm + "/sd2_tiny.safetensors");
  EXPECT_EQ(sd2->info().family, LdmFamily::kSD2);
  EXPECT_EQ(sd2->info().cross_attention_dim, 40);
  EXPECT_TRUE(sd2->info().linear_projection);
  EXPECT_EQ(sd2->info().text_encoder, LdmTextEncoder::kOpenClip);

  // Tiny models match no full-size config: loading without one says so.
  auto b = cpu_f32();
  const std::string e = error_of([&] { sd1->load_unet(*b); });
  EXPECT_NE(e.find("unknown UNet architecture"), std::string::npos) << e;
  EXPECT_NE(e.find("cross-attention width 24"), std::string::npos) << e;
  EXPECT_NE(e.find("give its UNet config explicitly"), std::string::npos) << e;
}

// The detection tensors of a full-size UNet (zeros; shapes are all detection reads).
std::map<std::string, Tensor> full_size_probe(int context, bool linear_proj) {
  const std::string u = "model.diffusion_model.";
  std::map<std::string, Tensor> t;
  t[u + "input_blocks.0.0.weight"] = Tensor::host(Shape{320, 4, 3, 3}, DType::F32);
  t[u + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] =
      Tensor::host(Shape{320, context}, DType::F32);
  t[u + "input_blocks.1.1.proj_in.weight"] = linear_proj
                                                 ? Tensor::host(Shape{320, 320}, DType::F32)
                                                 : Tensor::host(Shape{320, 320, 1, 1}, DType::F32);
  return t;
}

TEST_F(LdmCheckpointFiles, FullSizeFamiliesGetTheirDefaultConfigs) {
  write_safetensors(path("sd15.safetensors"), full_size_probe(768, false));
  auto sd15 = LdmCheckpoint::open(path("sd15.safetensors"));
  EXPECT_EQ(sd15->info().family, LdmFamily::kSD1);
  EXPECT_TRUE(sd15->info().full_size);
  EXPECT_EQ(sd15->default_unet_config().cross_attention_dim, 768);
  EXPECT_EQ(sd15->default_unet_config().num_heads, (std::vector<int>{8, 8, 8, 8}));

  write_safetensors(path("sd21.safetensors"), full_size_probe(1024, true));
  auto sd21 = LdmCheckpoint::open(path("sd21.safetensors"));
  EXPECT_EQ(sd21->info().family, LdmFamily::kSD2);
  EXPECT_TRUE(sd21->info().full_size);
  const UNetConfig c = sd21->default_unet_config();
  EXPECT_EQ(c.cross_attention_dim, 1024);
  EXPECT_TRUE(c.use_linear_projection);
  EXPECT_EQ(c.num_heads, (std::vector<int>{5, 10, 20, 20}));
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{320, 640, 1280, 1280}));

  // The probe is not a whole UNet: loading names the first missing tensor.
  auto b = cpu_f32();
  const std::string e = error_of([&] { sd21->load_unet(*b); });
  EXPECT_NE(e.find("missing tensor 'model.diffusion_model.input_blocks.0.0.bias'"),
            std::string::npos)
      << e;
}

// ---- errors ----------------------------------------------------------------------------------

TEST_F(LdmCheckpointFiles, PicklesAreRefusedWithAConversionHint) {
  for (const char* name : {"model.ckpt", "model.pt", "pytorch_model.bin"}) {
    std::ofstream(path(name)) << "whatever";
    const std::string e = error_of([&] { LdmCheckpoint::open(path(name)); });
    EXPECT_NE(e.find("pickle"), std::string::npos) << e;
    EXPECT_NE(e.find("Convert it to .safetensors"), std::string::npos) << e;
  }
  // By content, whatever the name: torch.save's zip archive and a raw pickle stream.
  std::ofstream(path("zip.safetensors"), std::ios::binary) << std::string("PK\x03\x04rest", 8);
  EXPECT_NE(error_of([&] { LdmCheckpoint::open(path("zip.safetensors")); }).find("pickle"),
            std::string::npos);
  std::ofstream(path("raw.safetensors"), std::ios::binary) << std::string("\x80\x02}q\x00", 5);
  EXPECT_NE(error_of([&] { LdmCheckpoint::open(path("raw.safetensors")); }).find("pickle"),
            std::string::npos);
}

TEST_F(LdmCheckpointFiles, UnknownArchitecturesAreNamed) {
  // A diffusers UNet file is not a single-file checkpoint.
  std::string e = error_of([&] {
    LdmCheckpoint::open(kFixtures + "/unet/sd1_tiny/unet/diffusion_pytorch_model.safetensors");
  });
  EXPECT_NE(e.find("no model.diffusion_model.* tensors"), std::string::npos) << e;

  auto sdxl = full_size_probe(2048, true);
  sdxl["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] =
      Tensor::host(Shape{4}, DType::F32);
  write_safetensors(path("sdxl.safetensors"), sdxl);
  e = error_of([&] { LdmCheckpoint::open(path("sdxl.safetensors")); });
  EXPECT_NE(e.find("SDXL"), std::string::npos) << e;

  auto inpaint = full_size_probe(768, false);
  inpaint["model.diffusion_model.input_blocks.0.0.weight"] =
      Tensor::host(Shape{320, 9, 3, 3}, DType::F32);
  write_safetensors(path("inpaint.safetensors"), inpaint);
  e = error_of([&] { LdmCheckpoint::open(path("inpaint.safetensors")); });
  EXPECT_NE(e.find("takes 9 channels"), std::string::npos) << e;

  // SD 2.x UNet with an SD 1.x text encoder.
  auto mixed = full_size_probe(1024, true);
  mixed["cond_stage_model.transformer.text_model.final_layer_norm.weight"] =
      Tensor::host(Shape{4}, DType::F32);
  write_safetensors(path("mixed.safetensors"), mixed);
  e = error_of([&] { LdmCheckpoint::open(path("mixed.safetensors")); });
  EXPECT_NE(e.find("inconsistent checkpoint"), std::string::npos) << e;
}

TEST_F(LdmCheckpointFiles, MissingTensorAndConfigMismatchAreNamed) {
  auto b = cpu_f32();
  const UNetConfig sd1 = UNetConfig::from_json_file(kFixtures + "/unet/sd1_tiny/unet/config.json");
  const std::string dropped = "model.diffusion_model.output_blocks.5.2.conv.weight";
  auto ckpt =
      LdmCheckpoint::open(rewrite(kLdm + "/sd1_tiny.safetensors", "drop.safetensors", dropped));
  std::string e = error_of([&] { ckpt->load_unet(*b, &sd1); });
  EXPECT_NE(e.find("missing tensor '" + dropped + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("up_blocks.1.upsamplers.0.conv.weight"), std::string::npos) << e;

  // sd2_tiny's config on sd1_tiny's tensors: the first misshaped tensor, both shapes.
  const UNetConfig sd2 = UNetConfig::from_json_file(kFixtures + "/unet/sd2_tiny/unet/config.json");
  auto full = LdmCheckpoint::open(kLdm + "/sd1_tiny.safetensors");
  e = error_of([&] { full->load_unet(*b, &sd2); });
  EXPECT_NE(e.find("has shape"), std::string::npos) << e;
  EXPECT_NE(e.find("the UNet config expects"), std::string::npos) << e;

  // An extra tensor under model.diffusion_model. is reported, not ignored.
  auto extra = LdmCheckpoint::open(rewrite(
      kLdm + "/sd1_tiny.safetensors", "extra.safetensors", "",
      {{"model.diffusion_model.input_blocks.99.0.weight", Tensor::host(Shape{2}, DType::F32)}}));
  e = error_of([&] { extra->load_unet(*b, &sd1); });
  EXPECT_NE(e.find("unexpected UNet tensor 'model.diffusion_model.input_blocks.99.0.weight'"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace sd
