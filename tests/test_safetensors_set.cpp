// SafetensorsSet: sharded weights (an index JSON + shard files) read like one file. The committed
// tiny UNet, CLIP text encoder and VAE fixtures are split into shards in a temp folder (written
// with write_safetensors); the models loaded from the shards must give bitwise the outputs of
// the single-file load. Each kind of broken index gets an error naming the index and the shard or
// tensor at fault.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/model_files.h"
#include "io/safetensors.h"
#include "io/safetensors_set.h"
#include "models/autoencoder_kl.h"
#include "models/clip_text.h"
#include "models/unet.h"
#include "test_support.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using test::cpu_backend;
using test::error_of;

const fs::path kFixtures = SD_FIXTURE_DIR;

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

DType stored_dtype(const SafetensorsEntry& e) {
  if (e.dtype == "F16") return DType::F16;
  if (e.dtype == "BF16") return DType::BF16;
  EXPECT_EQ(e.dtype, "F32") << e.name;
  return DType::F32;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// Splits `src` into `shards` files "<stem>-0000i-of-0000n.safetensors" in `dir` (tensors in name
// order, in contiguous runs) and writes the index `dir/index_name`. Returns the weight map.
std::map<std::string, std::string> split_into_shards(const fs::path& src, const fs::path& dir,
                                                     const std::string& stem,
                                                     const std::string& index_name, int shards) {
  auto file = SafetensorsFile::open(src.string());
  const auto& entries = file->entries();
  std::map<std::string, std::string> weight_map;
  nlohmann::json index;
  size_t total = 0;
  for (int s = 0; s < shards; ++s) {
    char name[96];
    std::snprintf(name, sizeof name, "%s-%05d-of-%05d.safetensors", stem.c_str(), s + 1, shards);
    std::map<std::string, Tensor> part;
    for (size_t i = entries.size() * s / shards; i < entries.size() * (s + 1) / shards; ++i) {
      const SafetensorsEntry& e = entries[i];
      part[e.name] = file->load(e.name, stored_dtype(e));
      weight_map[e.name] = name;
      index["weight_map"][e.name] = name;
      total += e.end - e.begin;
    }
    write_safetensors((dir / name).string(), part);
  }
  index["metadata"]["total_size"] = total;
  write_text(dir / index_name, index.dump(2));
  return weight_map;
}

class SafetensorsSetTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_shards_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A shard holding small f32 tensors with the given names.
  void write_shard(const std::string& shard, const std::vector<std::string>& names) {
    std::map<std::string, Tensor> t;
    float v = 1.f;
    for (const std::string& n : names) {
      Tensor x = Tensor::host(Shape{2, 3}, DType::F32);
      for (int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = v++;
      t[n] = x;
    }
    write_safetensors((dir_ / shard).string(), t);
  }
  // Writes `index_text` as the index and returns what opening it throws.
  std::string open_error(const std::string& index_text) {
    write_text(dir_ / kIndex, index_text);
    return error_of([&] { SafetensorsSet::open((dir_ / kIndex).string()); });
  }
  // Two good shards: a, b in s1; c in s2.
  void write_two_shards() {
    write_shard("s1.safetensors", {"a", "b"});
    write_shard("s2.safetensors", {"c"});
  }

  static constexpr const char* kIndex = "model.safetensors.index.json";
  fs::path dir_;
};

void expect_all(const std::string& msg, const std::vector<std::string>& parts) {
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

// ---- reading ---------------------------------------------------------------------------------

TEST_F(SafetensorsSetTest, ShardsReadLikeTheSingleFile) {
  const fs::path src = kFixtures / "clip_text" / "tiny" / "text_encoder" / "model.safetensors";
  const auto map = split_into_shards(src, dir_, "model", kIndex, 3);
  auto single = SafetensorsSet::open(src.string());
  auto set = SafetensorsSet::open((dir_ / kIndex).string());
  EXPECT_FALSE(single->sharded());
  EXPECT_TRUE(set->sharded());
  EXPECT_EQ(set->files().size(), 3u);
  EXPECT_NE(set->describe().find("(3 shards)"), std::string::npos) << set->describe();
  EXPECT_EQ(set->metadata().count("total_size"), 1u);
  ASSERT_EQ(set->entries().size(), single->entries().size());
  for (size_t i = 0; i < set->entries().size(); ++i) {
    const SafetensorsEntry& a = set->entries()[i];
    const SafetensorsEntry& b = single->entries()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.dtype, b.dtype);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_TRUE(set->contains(a.name));
    EXPECT_EQ(fs::path(set->file_of(a.name).path()).filename().string(), map.at(a.name));
    EXPECT_TRUE(bit_equal(set->load(a.name, DType::F32), single->load(a.name, DType::F32)))
        << a.name;
    EXPECT_TRUE(bit_equal(set->view(a.name), single->view(a.name))) << a.name;
  }
  EXPECT_FALSE(set->contains("no.such.tensor"));
  expect_all(error_of([&] { set->entry("no.such.tensor"); }), {kIndex, "no.such.tensor"});
}

TEST_F(SafetensorsSetTest, ShardedUNetMatchesSingleFileBitwise) {
  const fs::path unet = kFixtures / "unet" / "sd1_tiny" / "unet";
  fs::copy_file(unet / "config.json", dir_ / "config.json");
  split_into_shards(unet / "diffusion_pytorch_model.safetensors", dir_, "diffusion_pytorch_model",
                    "diffusion_pytorch_model.safetensors.index.json", 3);
  auto b = cpu_backend("f32");
  auto single = UNet::load(unet.string(), *b);
  auto sharded = UNet::load(dir_.string(), *b);
  EXPECT_NE(sharded->source().find("diffusion_pytorch_model.safetensors.index.json"),
            std::string::npos)
      << sharded->source();
  auto ref =
      SafetensorsFile::open((kFixtures / "unet" / "sd1_tiny" / "reference.safetensors").string());
  Tensor sample = b->upload(ref->load("sample", DType::F32));
  Tensor states = b->upload(ref->load("encoder_hidden_states", DType::F32));
  Tensor t = ref->load("timesteps", DType::F32);
  const std::vector<float> ts(t.data_as<float>(), t.data_as<float>() + t.numel());
  Tensor want = b->download(single->forward(sample, ts, states));
  Tensor got = b->download(sharded->forward(sample, ts, states));
  EXPECT_TRUE(bit_equal(got, want));
}

TEST_F(SafetensorsSetTest, ShardedTextEncoderMatchesSingleFileBitwise) {
  const fs::path te = kFixtures / "clip_text" / "tiny" / "text_encoder";
  fs::copy_file(te / "config.json", dir_ / "config.json");
  split_into_shards(te / "model.safetensors", dir_, "model", kIndex, 2);
  auto b = cpu_backend("f32");
  auto single = ClipTextModel::load(te.string(), *b);
  auto sharded = ClipTextModel::load(dir_.string(), *b);
  std::vector<int> ids;
  for (int r = 0; r < 2; ++r)
    for (int i = 0; i < 77; ++i) ids.push_back(i == 0 ? 498 : i < 9 + r * 5 ? 3 * i + r : 499);
  EXPECT_TRUE(bit_equal(sharded->forward_to_host(ids, 2), single->forward_to_host(ids, 2)));
}

TEST_F(SafetensorsSetTest, ShardedFp16VaeMatchesSingleFileBitwise) {
  // The fixture has only the .fp16 variant: the .fp16 index is found the same way.
  const fs::path vae = kFixtures / "vae" / "tiny" / "vae";
  fs::copy_file(vae / "config.json", dir_ / "config.json");
  split_into_shards(vae / "diffusion_pytorch_model.fp16.safetensors", dir_,
                    "diffusion_pytorch_model.fp16",
                    "diffusion_pytorch_model.fp16.safetensors.index.json", 2);
  auto b = cpu_backend("f32");
  auto single = AutoencoderKL::load(vae.string(), *b);
  auto sharded = AutoencoderKL::load(dir_.string(), *b);
  Tensor z = Tensor::host(Shape{1, 4, 4, 4}, DType::F32);
  for (int64_t i = 0; i < z.numel(); ++i) z.data_as<float>()[i] = float((i * 37) % 11) / 5.f - 1.f;
  Tensor dz = b->upload(z);
  EXPECT_TRUE(bit_equal(b->download(sharded->decode(dz)), b->download(single->decode(dz))));
}

TEST_F(SafetensorsSetTest, ComponentWeightsPreferASingleFile) {
  const std::string stem = "diffusion_pytorch_model";
  const std::string idx = stem + ".safetensors.index.json";
  const std::string idx16 = stem + ".fp16.safetensors.index.json";
  write_text(dir_ / idx16, "{}");
  EXPECT_EQ(find_component_weights(dir_, stem, "UNet folder"), (dir_ / idx16).string());
  write_text(dir_ / idx, "{}");
  EXPECT_EQ(find_component_weights(dir_, stem, "UNet folder"), (dir_ / idx).string());
  write_text(dir_ / (stem + ".fp16.safetensors"), "");
  EXPECT_EQ(find_component_weights(dir_, stem, "UNet folder"),
            (dir_ / (stem + ".fp16.safetensors")).string());
  write_text(dir_ / (stem + ".safetensors"), "");
  EXPECT_EQ(find_component_weights(dir_, stem, "UNet folder"),
            (dir_ / (stem + ".safetensors")).string());
}

// ---- broken indexes --------------------------------------------------------------------------

TEST_F(SafetensorsSetTest, IndexThatIsNotJsonIsNamed) {
  write_two_shards();
  expect_all(open_error("{\"weight_map\": {\"a\": "), {kIndex, "not valid JSON"});
}

TEST_F(SafetensorsSetTest, IndexWithoutWeightMapIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"metadata": {"total_size": 72}})"), {kIndex, "no \"weight_map\""});
  expect_all(open_error(R"({"weight_map": ["a"]})"), {kIndex, "\"weight_map\" is array"});
  expect_all(open_error(R"({"weight_map": {}})"), {kIndex, "lists no tensors"});
  expect_all(open_error(R"([1, 2])"), {kIndex, "not a JSON object"});
}

TEST_F(SafetensorsSetTest, DuplicateKeyInIndexIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                            "a": "s1.safetensors", "c": "s2.safetensors"}})"),
             {kIndex, "duplicate key 'a'"});
}

TEST_F(SafetensorsSetTest, MissingShardIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                            "c": "s3.safetensors"}})"),
             {kIndex, "shard 's3.safetensors' is missing", (dir_ / "s3.safetensors").string()});
}

TEST_F(SafetensorsSetTest, ListedTensorAbsentFromItsShardIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                            "c": "s2.safetensors", "d": "s2.safetensors"}})"),
             {kIndex, "tensor 'd' is mapped to shard 's2.safetensors', which does not hold it"});
}

TEST_F(SafetensorsSetTest, UnlistedTensorInAShardIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "c": "s2.safetensors"}})"),
             {kIndex, "shard 's1.safetensors' holds tensor 'b'", "does not list"});
}

TEST_F(SafetensorsSetTest, TensorListedForAnotherShardIsNamed) {
  write_two_shards();
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors",
                            "c": "s2.safetensors"}})"),
             {kIndex, "shard 's1.safetensors' holds tensor 'b'", "maps to shard 's2.safetensors'"});
}

TEST_F(SafetensorsSetTest, TensorInTwoShardsIsNamed) {
  write_shard("s1.safetensors", {"a", "b"});
  write_shard("s2.safetensors", {"b", "c"});
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                            "c": "s2.safetensors"}})"),
             {kIndex, "tensor 'b' is in two shards", "s1.safetensors", "s2.safetensors"});
}

TEST_F(SafetensorsSetTest, ShardNameWithPathIsRejected) {
  write_two_shards();
  fs::create_directories(dir_ / "sub");
  write_shard("sub/s3.safetensors", {"c"});
  for (const char* bad : {"../s2.safetensors", "sub/s3.safetensors", "sub\\\\s3.safetensors", "..",
                          "/tmp/s2.safetensors"}) {
    const std::string text = std::string(R"({"weight_map": {"a": "s1.safetensors", "b": )") +
                             R"("s1.safetensors", "c": ")" + bad + "\"}}";
    expect_all(open_error(text), {kIndex, "must be a plain file name", "'c'"});
  }
}

TEST_F(SafetensorsSetTest, BrokenShardIsNamed) {
  write_shard("s1.safetensors", {"a", "b"});
  write_text(dir_ / "s2.safetensors", "short");  // under the 8-byte length field
  expect_all(open_error(R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                            "c": "s2.safetensors"}})"),
             {"s2.safetensors", "truncated"});
}

TEST_F(SafetensorsSetTest, LoaderErrorsNameTheIndex) {
  // A UNet whose index maps a tensor the config needs to nothing: the missing tensor is named
  // with the index it was looked up in.
  const fs::path unet = kFixtures / "unet" / "sd1_tiny" / "unet";
  fs::copy_file(unet / "config.json", dir_ / "config.json");
  write_two_shards();
  write_text(dir_ / "diffusion_pytorch_model.safetensors.index.json",
             R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                 "c": "s2.safetensors"}})");
  auto b = cpu_backend("f32");
  expect_all(error_of([&] { UNet::load(dir_.string(), *b); }),
             {"diffusion_pytorch_model.safetensors.index.json", "missing tensor"});
}

}  // namespace
}  // namespace sd
