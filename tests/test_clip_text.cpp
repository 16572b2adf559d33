// CLIP text encoders against transformers' CLIPTextModel (fp32, CPU): references written by
// tools/make_text_encoder_fixtures.py. The tiny config comes as a committed diffusers folder;
// the full-size ViT-L/14 and ViT-H/14 (23 layers) are rebuilt here from hash_random weights.
// Tolerances: relative error ||ours - ref|| / ||ref|| <= 1e-4 in f32, <= 2e-2 in bf16, on the
// last hidden state and the clip_skip 1 and 2 outputs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/prompt_encoder.h"
#include "test_support.h"
#include "text/clip_tokenizer.h"

namespace sd {
namespace {

using test::cpu_backend;
using test::error_of;
using test::rel_error;

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(SD_FIXTURE_DIR) / "clip_text";
const fs::path kTinyFolder = kFixtures / "tiny" / "text_encoder";
const char* const kOutputs[] = {"last_hidden_state", "clip_skip_1", "clip_skip_2"};

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

struct Reference {
  std::unique_ptr<SafetensorsFile> file;
  std::vector<int> ids;  // batch rows, flattened
  int batch = 0;
  Tensor output(int clip_skip) const { return file->load(kOutputs[clip_skip], DType::F32); }
  std::string meta(const std::string& key) const { return file->metadata().at(key); }
};

Reference read_reference(const fs::path& path) {
  Reference r;
  r.file = SafetensorsFile::open(path.string());
  const auto rows = nlohmann::json::parse(r.file->metadata().at("input_ids"));
  for (const auto& row : rows) {
    for (const auto& id : row) r.ids.push_back(id.get<int>());
    ++r.batch;
  }
  return r;
}

// Runs the model at clip_skip 0, 1, 2 and compares with the reference.
void expect_matches(const ClipTextModel& model, const Reference& ref, double tol,
                    const std::string& what) {
  for (int skip = 0; skip < 3; ++skip) {
    const double err = rel_error(model.forward_to_host(ref.ids, ref.batch, skip), ref.output(skip));
    std::printf("  %s %s: rel error %.3g\n", what.c_str(), kOutputs[skip], err);
    EXPECT_LE(err, tol) << what << " " << kOutputs[skip];
  }
}

// Expects `fn` to throw an sd::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

class ClipTextFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sd_clip_text_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The tiny folder's tensors, renamed by `rename` (dropped where it returns "").
  std::map<std::string, Tensor> tiny_tensors(
      const std::function<std::string(const std::string&)>& rename) {
    auto f = SafetensorsFile::open((kTinyFolder / "model.safetensors").string());
    std::map<std::string, Tensor> out;
    for (const SafetensorsEntry& e : f->entries()) {
      const std::string name = rename(e.name);
      if (!name.empty()) out[name] = f->load(e.name, DType::F16);
    }
    return out;
  }
  fs::path dir_;
};

// ---- tiny config: folder, single files, errors -------------------------------------------------

void check_tiny_folder(const char* dtype, double tol) {
  const Reference ref = read_reference(kFixtures / "tiny" / "reference.safetensors");
  ASSERT_EQ(ref.batch, 2);
  auto backend = cpu_backend(dtype);
  auto model = ClipTextModel::load(kTinyFolder.string(), *backend);
  EXPECT_EQ(model->config().hidden_size, 128);
  EXPECT_EQ(model->config().num_hidden_layers, 2);
  EXPECT_EQ(model->config().hidden_act, "gelu");
  EXPECT_FALSE(model->openclip_names());
  expect_matches(*model, ref, tol, std::string("tiny ") + dtype);
}

TEST(ClipTextTiny, FolderMatchesTransformersF32) {
  check_tiny_folder("f32", 1e-4);
}

TEST(ClipTextTiny, FolderMatchesTransformersBf16) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16";
  check_tiny_folder("bf16", 2e-2);
}

TEST(ClipTextTiny, ModelFolderAndTextEncoderFolderLoadTheSame) {
  auto backend = cpu_backend("f32");
  auto a = ClipTextModel::load(kTinyFolder.string(), *backend);
  auto b = ClipTextModel::load(kTinyFolder.parent_path().string(), *backend);
  const Reference ref = read_reference(kFixtures / "tiny" / "reference.safetensors");
  EXPECT_TRUE(
      bit_equal(a->forward_to_host(ref.ids, ref.batch), b->forward_to_host(ref.ids, ref.batch)));
}

TEST(ClipTextTiny, Sd2SingleFileEqualsFolder) {
  auto backend = cpu_backend("f32");
  auto folder = ClipTextModel::load(kTinyFolder.string(), *backend);
  // No config given: inferred from the shapes (3 resblocks -> 2 layers, heads = 128 / 64, gelu).
  auto single =
      ClipTextModel::load((kFixtures / "tiny" / "sd2_single_file.safetensors").string(), *backend);
  EXPECT_TRUE(single->openclip_names());
  const ClipTextConfig& a = folder->config();
  const ClipTextConfig& b = single->config();
  EXPECT_EQ(b.num_hidden_layers, a.num_hidden_layers);
  EXPECT_EQ(b.num_attention_heads, a.num_attention_heads);
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.intermediate_size, a.intermediate_size);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.max_position_embeddings, a.max_position_embeddings);
  EXPECT_EQ(b.hidden_act, a.hidden_act);
  const Reference ref = read_reference(kFixtures / "tiny" / "reference.safetensors");
  for (int skip = 0; skip < 3; ++skip)
    EXPECT_TRUE(bit_equal(single->forward_to_host(ref.ids, ref.batch, skip),
                          folder->forward_to_host(ref.ids, ref.batch, skip)))
        << "clip_skip " << skip;
}

TEST_F(ClipTextFiles, Sd1SingleFileEqualsFolder) {
  auto backend = cpu_backend("f32");
  auto folder = ClipTextModel::load(kTinyFolder.string(), *backend);
  const Reference ref = read_reference(kFixtures / "tiny" / "reference.safetensors");
  const Tensor want = folder->forward_to_host(ref.ids, ref.batch, 1);
  // Current SD 1.x files keep "text_model."; early ones (transformers < 4.20) do not.
  for (bool keep_text_model : {true, false}) {
    auto tensors = tiny_tensors([&](const std::string& n) {
      return "cond_stage_model.transformer." +
             (keep_text_model ? n : n.substr(std::string("text_model.").size()));
    });
    tensors["model.diffusion_model.out.0.bias"] = Tensor::host({4}, DType::F32);
    const std::string path = (dir_ / "sd1.safetensors").string();
    write_safetensors(path, tensors);
    auto single = ClipTextModel::load(path, *backend, &folder->config());
    EXPECT_FALSE(single->openclip_names());
    EXPECT_TRUE(bit_equal(single->forward_to_host(ref.ids, ref.batch, 1), want))
        << "text_model. kept: " << keep_text_model;
    // Without a config, OpenAI CLIP names imply quick_gelu (SD 1.x's ViT-L/14).
    auto inferred = ClipTextModel::load(path, *backend);
    EXPECT_EQ(inferred->config().hidden_act, "quick_gelu");
    EXPECT_EQ(inferred->config().num_hidden_layers, 2);
    EXPECT_EQ(inferred->config().num_attention_heads, 2);
  }
}

TEST_F(ClipTextFiles, MissingOrMisshapedTensorsAreNamed) {
  auto backend = cpu_backend("f32");
  const std::string fc2 = "text_model.encoder.layers.1.mlp.fc2.weight";
  fs::create_directories(dir_ / "missing");
  fs::copy_file(kTinyFolder / "config.json", dir_ / "missing" / "config.json");
  write_safetensors((dir_ / "missing" / "model.safetensors").string(),
                    tiny_tensors([&](const std::string& n) { return n == fc2 ? "" : n; }));
  expect_error([&] { ClipTextModel::load((dir_ / "missing").string(), *backend); },
               {"model.safetensors", fc2, "missing", "[128, 200]"});

  fs::create_directories(dir_ / "misshaped");
  fs::copy_file(kTinyFolder / "config.json", dir_ / "misshaped" / "config.json");
  auto tensors = tiny_tensors([](const std::string& n) { return n; });
  tensors[fc2] = Tensor::host({128, 199}, DType::F16);
  write_safetensors((dir_ / "misshaped" / "model.safetensors").string(), tensors);
  expect_error([&] { ClipTextModel::load((dir_ / "misshaped").string(), *backend); },
               {fc2, "[128, 199]", "[128, 200]"});

  // An SD 2.x file whose fused in_proj has the wrong row count.
  auto sd2 = SafetensorsFile::open((kFixtures / "tiny" / "sd2_single_file.safetensors").string());
  std::map<std::string, Tensor> t2;
  for (const SafetensorsEntry& e : sd2->entries()) t2[e.name] = sd2->load(e.name, DType::F32);
  const std::string in_proj = "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight";
  t2[in_proj] = Tensor::host({256, 128}, DType::F32);
  write_safetensors((dir_ / "sd2.safetensors").string(), t2);
  expect_error([&] { ClipTextModel::load((dir_ / "sd2.safetensors").string(), *backend); },
               {in_proj, "[256, 128]", "[384, 128]"});
}

TEST_F(ClipTextFiles, BadPathsAndConfigsAreReported) {
  auto backend = cpu_backend("f32");
  expect_error([&] { ClipTextModel::load((dir_ / "nope").string(), *backend); },
               {"nope", "does not exist"});
  expect_error([&] { ClipTextModel::load(dir_.string(), *backend); }, {"config.json"});
  fs::copy_file(kTinyFolder / "config.json", dir_ / "config.json");
  expect_error([&] { ClipTextModel::load(dir_.string(), *backend); },
               {"model.safetensors", "model.fp16.safetensors"});
  // A single file with unrelated tensors only.
  write_safetensors((dir_ / "unet.safetensors").string(),
                    {{"model.diffusion_model.out.0.bias", Tensor::host({4}, DType::F32)}});
  expect_error([&] { ClipTextModel::load((dir_ / "unet.safetensors").string(), *backend); },
               {"unet.safetensors", "no CLIP text encoder"});
  {
    std::FILE* f = std::fopen((dir_ / "model.ckpt").c_str(), "wb");
    std::fclose(f);
  }
  expect_error([&] { ClipTextModel::load((dir_ / "model.ckpt").string(), *backend); },
               {"model.ckpt", "pickle"});
  const std::string bad_config = (dir_ / "bad.json").string();
  for (const auto& [text, what] : std::vector<std::pair<std::string, std::string>>{
           {R"({"hidden_act": "swish"})", "swish"},
           {R"({"hidden_size": 100, "num_attention_heads": 12})", "not a multiple"},
           {R"({"num_hidden_layers": "12"})", "num_hidden_layers"},
           {R"([1, 2])", "not a JSON object"},
           {R"({"hidden_size": )", "not valid JSON"},
           {R"({"architectures": ["CLIPVisionModel"]})", "CLIPVisionModel"}}) {
    std::FILE* f = std::fopen(bad_config.c_str(), "wb");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
    expect_error([&] { ClipTextConfig::from_json_file(bad_config); }, {"bad.json", what});
  }
}

TEST(ClipTextTiny, BadForwardArgumentsAreReported) {
  auto backend = cpu_backend("f32");
  auto model = ClipTextModel::load(kTinyFolder.string(), *backend);
  std::vector<int> ids(77, 1);
  expect_error([&] { model->forward(ids, 1, 3); }, {"clip_skip 3", "[0, 2]"});
  expect_error([&] { model->forward(ids, 1, -1); }, {"clip_skip -1"});
  ids[5] = 500;
  expect_error([&] { model->forward(ids, 1); }, {"token id 500", "position 5", "500"});
  ids[5] = -1;
  expect_error([&] { model->forward(ids, 1); }, {"token id -1"});
  expect_error([&] { model->forward(std::vector<int>(78, 1), 1); }, {"78 tokens", "77 positions"});
  expect_error([&] { model->forward(std::vector<int>(77, 1), 2); }, {"77 token ids", "2 rows"});
  expect_error([&] { model->forward({}, 1); }, {"0 token ids"});
  // Shorter sequences are fine (the causal mask makes them a prefix of the 77-token result).
  const Tensor full = model->forward_to_host(std::vector<int>(77, 7), 1);
  const Tensor prefix = model->forward_to_host(std::vector<int>(10, 7), 1);
  EXPECT_LE(rel_error(prefix, full.reshape({77, 128}).slice0(0, 10).reshape({1, 10, 128})), 1e-6);
}

// ---- full-size architectures with hash_random weights ------------------------------------------

// f32 through the prompt path: the committed tokenizer gives the reference's ids, and
// PromptEncoder's embeddings are the reference outputs.
void check_full_size_f32(const char* name, const ClipTextConfig& config) {
  const Reference ref = read_reference(kFixtures / (std::string(name) + ".safetensors"));
  ASSERT_EQ(ref.batch, 1);
  auto tokenizer = std::make_shared<const text::ClipTokenizer>(text::ClipTokenizer::from_folder(
      fs::path(SD_FIXTURE_DIR) / "tokenizer" / ref.meta("tokenizer")));
  EXPECT_EQ(tokenizer->tokenize_for_model(ref.meta("prompt")), ref.ids);
  auto backend = cpu_backend("f32");
  std::shared_ptr<ClipTextModel> model = ClipTextModel::hash_random(config, *backend);
  PromptEncoder encoder(tokenizer, model);
  for (int skip = 0; skip < 3; ++skip) {
    const Tensor got = encoder.encode(ref.meta("prompt"), skip);
    const double err = rel_error(got.reshape({1, 77, config.hidden_size}), ref.output(skip));
    std::printf("  %s f32 %s: rel error %.3g\n", name, kOutputs[skip], err);
    EXPECT_LE(err, 1e-4) << name << " f32 " << kOutputs[skip];
  }
}

void check_full_size_bf16(const char* name, const ClipTextConfig& config) {
  const Reference ref = read_reference(kFixtures / (std::string(name) + ".safetensors"));
  auto backend = cpu_backend("bf16");
  auto model = ClipTextModel::hash_random(config, *backend);
  expect_matches(*model, ref, 2e-2, std::string(name) + " bf16");
}

TEST(ClipTextFull, VitL14F32MatchesTransformers) {
  check_full_size_f32("vit_l14", ClipTextConfig::vit_l14());
}

TEST(ClipTextFull, VitH14F32MatchesTransformers) {
  check_full_size_f32("vit_h14", ClipTextConfig::vit_h14());
}

TEST(ClipTextFull, VitL14Bf16MatchesTransformers) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16";
  check_full_size_bf16("vit_l14", ClipTextConfig::vit_l14());
}

TEST(ClipTextFull, VitH14Bf16MatchesTransformers) {
  if (!cpu_has_native_bf16()) GTEST_SKIP() << "this CPU has no native bf16";
  check_full_size_bf16("vit_h14", ClipTextConfig::vit_h14());
}

TEST(ClipTextFull, FlopCountsAreTheIssues) {
  EXPECT_NEAR(ClipTextConfig::vit_l14().flops(77) / 1e9, 13.3, 0.05);
  EXPECT_NEAR(ClipTextConfig::vit_h14().flops(77) / 1e9, 45.1, 0.05);
}

// ---- prompt encoder and its cache ---------------------------------------------------------------

ClipTextConfig small_full_vocab_config() {
  ClipTextConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  return c;
}

TEST(ClipTextPromptEncoder, CacheHitReturnsTheSameTensorWithoutEncoding) {
  auto backend = cpu_backend("f32");
  std::shared_ptr<ClipTextModel> model =
      ClipTextModel::hash_random(small_full_vocab_config(), *backend);
  auto tokenizer = std::make_shared<const text::ClipTokenizer>(text::ClipTokenizer::builtin());
  PromptEncoder encoder(tokenizer, model, /*cache_capacity=*/2);

  const Tensor a = encoder.encode("a cat on a sofa");
  EXPECT_EQ(a.shape(), Shape({77, 64}));
  EXPECT_EQ(a.dtype(), DType::F32);
  EXPECT_EQ(encoder.forward_count(), 1u);
  const Tensor a2 = encoder.encode("a cat on a sofa");
  EXPECT_EQ(encoder.forward_count(), 1u);
  EXPECT_EQ(a2.data(), a.data());
  // The cached value is the model's output for the tokenized prompt.
  const Tensor direct = model->forward_to_host(tokenizer->tokenize_for_model("a cat on a sofa"), 1);
  EXPECT_TRUE(bit_equal(a, direct.reshape({77, 64})));

  // clip_skip is part of the key.
  const Tensor s1 = encoder.encode("a cat on a sofa", 1);
  EXPECT_EQ(encoder.forward_count(), 2u);
  EXPECT_FALSE(bit_equal(s1, a));
  // The empty (unconditional) prompt: BOS, EOS, padding.
  const Tensor empty = encoder.encode("");
  EXPECT_EQ(empty.shape(), Shape({77, 64}));
  EXPECT_EQ(encoder.forward_count(), 3u);
  EXPECT_EQ(encoder.cache_size(), 2u);  // capacity 2: the least recently used entry went
  encoder.encode("");
  encoder.encode("a cat on a sofa", 1);
  EXPECT_EQ(encoder.forward_count(), 3u);
  encoder.encode("a cat on a sofa");  // evicted above: encoded again
  EXPECT_EQ(encoder.forward_count(), 4u);
  encoder.clear_cache();
  EXPECT_EQ(encoder.cache_size(), 0u);
  encoder.encode("");
  EXPECT_EQ(encoder.forward_count(), 5u);
}

TEST(ClipTextPromptEncoder, TokenizerLargerThanTheVocabularyIsAnError) {
  auto backend = cpu_backend("f32");
  // The tiny fixture has a 500-token vocabulary and no tokenizer/ folder, so the built-in CLIP
  // vocabulary is chosen, and it does not fit.
  expect_error([&] { PromptEncoder::load(kTinyFolder.parent_path().string(), *backend); },
               {"tokenizer has 49408 tokens", "500"});
}

// ---- the encode-prompt command ------------------------------------------------------------------

std::string run_cli(const std::string& args, int* status) {
  const std::string cmd = std::string("\"") + SD_CLI_PATH + "\" encode-prompt " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while (pipe && (n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  *status = pipe ? pclose(pipe) : -1;
  return out;
}

TEST_F(ClipTextFiles, EncodePromptCommandWritesEmbeddings) {
  // A diffusers-style model folder: a small full-vocabulary encoder with hash weights and the
  // committed SD 1.5 tokenizer.
  const ClipTextConfig c = small_full_vocab_config();
  fs::create_directories(dir_ / "model" / "text_encoder");
  fs::copy(fs::path(SD_FIXTURE_DIR) / "tokenizer" / "sd15", dir_ / "model" / "tokenizer");
  {
    std::FILE* f = std::fopen((dir_ / "model" / "text_encoder" / "config.json").c_str(), "wb");
    std::fprintf(f,
                 R"({"hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, )"
                 R"("num_attention_heads": %d, "hidden_act": "quick_gelu"})",
                 c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads);
    std::fclose(f);
  }
  std::map<std::string, Tensor> weights;
  const ClipTextParamSource capture = [&](const std::string& name, const Shape& shape) {
    return weights[name] = ClipTextModel::hash_param(name, shape);
  };
  auto backend = cpu_backend("f32");
  std::shared_ptr<ClipTextModel> model = ClipTextModel::from_params(c, capture, *backend, "hash");
  write_safetensors((dir_ / "model" / "text_encoder" / "model.safetensors").string(), weights);

  const std::string out = (dir_ / "emb.safetensors").string();
  int status = 0;
  const std::string log = run_cli("--model '" + (dir_ / "model").string() +
                                      "' 'a red fox, watercolor' --negative '' --clip-skip 1 "
                                      "--dtype f32 --out '" +
                                      out + "'",
                                  &status);
  ASSERT_EQ(status, 0) << log;
  auto file = SafetensorsFile::open(out);
  EXPECT_EQ(file->metadata().at("prompt"), "a red fox, watercolor");
  EXPECT_EQ(file->metadata().at("clip_skip"), "1");
  auto tokenizer = std::make_shared<const text::ClipTokenizer>(
      text::ClipTokenizer::from_folder(dir_ / "model" / "tokenizer"));
  PromptEncoder encoder(tokenizer, model);
  const Tensor pos = file->load("prompt_embeds", DType::F32, Shape{1, 77, c.hidden_size});
  const Tensor neg = file->load("negative_prompt_embeds", DType::F32, Shape{1, 77, c.hidden_size});
  EXPECT_TRUE(
      bit_equal(pos.reshape({77, c.hidden_size}), encoder.encode("a red fox, watercolor", 1)));
  EXPECT_TRUE(bit_equal(neg.reshape({77, c.hidden_size}), encoder.encode("", 1)));

  // PromptEncoder::load finds the tokenizer next to a text_encoder/ folder too.
  auto loaded = PromptEncoder::load((dir_ / "model" / "text_encoder").string(), *backend);
  EXPECT_TRUE(bit_equal(loaded->encode("a red fox, watercolor", 1),
                        encoder.encode("a red fox, watercolor", 1)));

  const std::string bad = run_cli(
      "--model '" + (dir_ / "model").string() + "' x --clip-skip 3 --out '" + out + "'", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(bad.find("error: --clip-skip 3 must be in [0, 2] for this text encoder"),
            std::string::npos)
      << bad;
}

}  // namespace
}  // namespace sd
