// The StreamDiffusion pipeline against the original `streamdiffusion` package: LCM scheduler
// constants (diffusers' LCMScheduler), torch-compatible noise (torch.randn / torch.rand), and
// frame-by-frame traces of the original pipeline on a tiny random-weight SD 1.x model
// (tools/make_stream_fixtures.py, fixtures/stream/), plus the similarity filter and bad settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "models/clip_text.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/scheduler.h"
#include "pipeline/similarity_filter.h"
#include "pipeline/stream.h"
#include "pipeline/torch_random.h"
#include "text/clip_tokenizer.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);
const fs::path kDir = kFixtures / "stream";

std::unique_ptr<Backend> cpu_f32() {
  BackendOptions o;
  o.device = "cpu";
  o.dtype = "f32";
  return make_backend(o);
}

double rel_error(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Distance in units in the last place between two floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(int64_t(ia) - int64_t(ib));
}

// ---- scheduler ---------------------------------------------------------------------------------

TEST(StreamScheduler, MatchesDiffusersLcmScheduler) {
  auto file = SafetensorsFile::open((kDir / "lcm_scheduler.safetensors").string());
  LcmScheduler sch;
  const Tensor ac = file->load("alphas_cumprod", DType::F32, Shape{1000});
  const Tensor betas = file->load("betas", DType::F32, Shape{1000});
  int64_t worst = 0;
  for (int i = 0; i < 1000; ++i) {
    worst = std::max(worst, ulps(sch.betas()[size_t(i)], betas.data_as<float>()[i]));
    worst = std::max(worst, ulps(sch.alphas_cumprod()[size_t(i)], ac.data_as<float>()[i]));
  }
  EXPECT_EQ(worst, 0) << "betas / alphas_cumprod differ from torch's float32 values";
  for (int n : {1, 2, 4, 7, 50}) {
    const Tensor ts = file->load("timesteps_" + std::to_string(n), DType::F32, Shape{n});
    const Tensor cs = file->load("constants_" + std::to_string(n), DType::F32, Shape{n, 4});
    const std::vector<int> got = sch.timesteps(n);
    ASSERT_EQ(int(got.size()), n);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(got[size_t(i)], int(ts.data_as<float>()[i])) << "n=" << n << " i=" << i;
      const SlotConstants c = sch.constants(got[size_t(i)]);
      const float* ref = cs.data_as<float>() + 4 * i;
      // torch's float sqrt (this build, AVX2 CPU) is not always correctly rounded: 1 ulp off
      // for some values; ours is, so a and b may differ by that ulp, c_out (a quotient by a
      // square root) by 2.
      EXPECT_LE(ulps(c.alpha_sqrt, ref[0]), 1) << "a, t=" << c.timestep;
      EXPECT_LE(ulps(c.beta_sqrt, ref[1]), 1) << "b, t=" << c.timestep;
      EXPECT_EQ(ulps(c.c_skip, ref[2]), 0) << "c_skip, t=" << c.timestep;
      EXPECT_LE(ulps(c.c_out, ref[3]), 2) << "c_out, t=" << c.timestep;
    }
  }
  const std::vector<int> t50 = sch.timesteps(50);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(t50[size_t(i)], 999 - 20 * i);
}

TEST(StreamScheduler, RejectsBadSettings) {
  LcmScheduler sch;
  EXPECT_THROW(sch.timesteps(0), Error);
  EXPECT_THROW(sch.timesteps(51), Error);
  EXPECT_THROW(sch.slots(50, {50}), Error);
  EXPECT_THROW(sch.slots(4, {0, 4}), Error);
  EXPECT_THROW(sch.slots(50, {}), Error);
  LcmSchedulerConfig bad;
  bad.beta_schedule = "squaredcos_cap_v2";
  EXPECT_THROW(LcmScheduler{bad}, Error);
}

// ---- torch random
// --------------------------------------------------------------------------------

TEST(StreamTorchRandom, RandnAndRandMatchTorchBitForBit) {
  auto file = SafetensorsFile::open((kDir / "torch_random.safetensors").string());
  int checked = 0;
  for (const SafetensorsEntry& e : file->entries()) {
    const Tensor ref = file->load(e.name, DType::F32);
    // names: randn_s<seed>_n<n>, rand_s<seed>_n<n>, sequence_s<seed>
    const size_t s = e.name.find("_s") + 2;
    const uint64_t seed = std::stoull(e.name.substr(s, e.name.find('_', s) - s));
    TorchGenerator g(seed);
    std::vector<float> got;
    if (e.name.rfind("sequence", 0) == 0) {
      for (int n : {1, 3, 20, 2}) {
        std::vector<float> part(static_cast<size_t>(n));
        g.randn(part.data(), n);
        got.insert(got.end(), part.begin(), part.end());
      }
    } else {
      got.resize(size_t(ref.numel()));
      if (e.name.rfind("randn", 0) == 0)
        g.randn(got.data(), ref.numel());
      else
        g.rand(got.data(), ref.numel());
    }
    ASSERT_EQ(int64_t(got.size()), ref.numel()) << e.name;
    int64_t worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i)
      worst = std::max(worst, ulps(got[size_t(i)], ref.data_as<float>()[i]));
    EXPECT_EQ(worst, 0) << e.name;
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

TEST(StreamTorchRandom, WideSeedsAreTorchsBelowTwoToThe32AndDistinctAbove) {
  auto draw = [](uint64_t seed, bool wide) {
    TorchGenerator g;
    if (wide)
      g.seed_wide(seed);
    else
      g.manual_seed(seed);
    std::vector<float> v(64);
    g.randn(v.data(), 64);
    return v;
  };
  for (uint64_t seed : {0ull, 2ull, 4294967295ull})  // torch's noise, bit for bit
    EXPECT_EQ(draw(seed, true), draw(seed, false)) << seed;
  EXPECT_EQ(draw(4294967296ull, false), draw(0, false));  // torch folds the high half away
  EXPECT_NE(draw(4294967296ull, true), draw(0, true));
  EXPECT_NE(draw(18446744073709551615ull, true), draw(4294967295ull, true));
  EXPECT_NE(draw(4294967296ull, true), draw(8589934592ull, true));
}

// ---- similarity filter -------------------------------------------------------------------------

TEST(StreamSimilarityFilter, DecisionsFollowTheProbabilityAndMaxSkip) {
  std::vector<double> draws;
  size_t next = 0;
  SimilarityFilter ssf(0.9f, 2, 0, [&] { return draws[next++]; });
  ssf.reset(4);
  const float a[4] = {1, 2, 3, 4};
  const float b[4] = {1, 2, 3, 4.5f};   // cos ≈ 0.99822 -> p = 1 - 0.00178 / 0.1 ≈ 0.982
  const float c[4] = {-1, 2, -3, 4};    // cos = 0.3333 -> p = 0
  EXPECT_FALSE(ssf.should_skip(a, 4));  // first frame: always processed, no draw
  draws = {0.5, 0.99, 0.1, 0.2, 0.3, 0.05};
  EXPECT_TRUE(ssf.should_skip(b, 4));  // 0.5 <= p: skip (count 1)
  EXPECT_NEAR(ssf.last_probability(), 1.0 - (1.0 - ssf.last_similarity()) / (1.0 - double(0.9f)),
              1e-12);
  EXPECT_NEAR(ssf.last_similarity(), 32.0 / std::sqrt(30.0 * 34.25), 1e-12);
  EXPECT_FALSE(ssf.should_skip(b, 4));  // p < 0.99: processed; b becomes the reference
  EXPECT_TRUE(ssf.should_skip(b, 4));   // identical: p = 1 (count 2)
  EXPECT_TRUE(ssf.should_skip(b, 4));   // count 3
  EXPECT_FALSE(ssf.should_skip(b, 4));  // count 3 > max 2: forced through, count reset
  EXPECT_EQ(ssf.skip_count(), 0);
  EXPECT_FALSE(ssf.should_skip(c, 4));  // dissimilar: p = 0 < 0.05
  EXPECT_EQ(ssf.last_probability(), 0.0);
  EXPECT_EQ(next, draws.size());
  // η >= 1: p = 0, so identical frames pass for any draw above 0 (a draw of exactly 0 would
  // skip, as in the original's `skip_prob < sample` test).
  SimilarityFilter never(1.0f, 10, 0, [] { return 0.5; });
  never.reset(4);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(never.should_skip(a, 4));
}

// ---- the pipeline against the original ---------------------------------------------------------

// A tiny pipeline: kind "" (SD 1.x-like, fixtures/stream/) or "sd2" (fixtures/stream/sd2/).
struct TinyModels {
  fs::path dir;
  std::unique_ptr<Backend> backend = cpu_f32();
  std::unique_ptr<UNet> unet;
  std::unique_ptr<Taesd> taesd;
  std::unique_ptr<TaesdCodec> codec;
  std::unique_ptr<PromptEncoder> text;

  explicit TinyModels(const std::string& kind) : dir(kind.empty() ? kDir : kDir / kind) {
    unet = UNet::load((dir / "unet").string(), *backend);
    taesd = Taesd::load((kFixtures / "taesd" / "tiny").string(), *backend);
    codec = std::make_unique<TaesdCodec>(*taesd);
    auto meta = SafetensorsFile::open((dir / "prompt_embeds.safetensors").string())->metadata();
    const nlohmann::json tc = nlohmann::json::parse(meta.at("text_config"));
    ClipTextConfig cfg;
    cfg.vocab_size = tc["vocab_size"];
    cfg.hidden_size = tc["hidden_size"];
    cfg.intermediate_size = tc["intermediate_size"];
    cfg.num_hidden_layers = tc["num_hidden_layers"];
    cfg.num_attention_heads = tc["num_attention_heads"];
    cfg.hidden_act = tc["hidden_act"];
    auto tok = std::make_shared<const text::ClipTokenizer>(
        text::ClipTokenizer::from_folder(kFixtures / "tokenizer" / meta.at("tokenizer")));
    std::shared_ptr<ClipTextModel> model = ClipTextModel::hash_random(cfg, *backend);
    text = std::make_unique<PromptEncoder>(tok, model);
  }
};

TinyModels& models(const std::string& kind = "") {
  static std::map<std::string, std::unique_ptr<TinyModels>> all;
  auto& m = all[kind];
  if (!m) m = std::make_unique<TinyModels>(kind);
  return *m;
}

TEST(StreamPromptEmbeddings, MatchTheReferenceEncodePrompt) {
  for (const std::string kind : {"", "sd2"}) {
    TinyModels& m = models(kind);
    auto file = SafetensorsFile::open((m.dir / "prompt_embeds.safetensors").string());
    const auto& meta = file->metadata();
    for (const auto& [name, key] : std::map<std::string, std::string>{
             {"cond", "prompt"}, {"uncond", "negative_prompt"}, {"cond2", "prompt2"}}) {
      const Tensor ref = file->load(name, DType::F32);
      const Tensor got = m.text->encode(meta.at(key));
      ASSERT_EQ(got.numel(), ref.numel());
      EXPECT_LE(rel_error(got.data_as<float>(), ref.data_as<float>(), ref.numel()), 1e-5)
          << kind << " " << name;
    }
  }
}

struct Trace {
  std::unique_ptr<SafetensorsFile> file;
  std::map<std::string, std::string> meta;
  StreamSettings settings;
};

// `name`: "<trace>" (SD 1.x set) or "sd2_<trace>".
std::string kind_of(const std::string& name) {
  return name.rfind("sd2_", 0) == 0 ? "sd2" : "";
}

Trace read_trace(const std::string& name) {
  Trace t;
  const std::string kind = kind_of(name);
  const fs::path dir = kind.empty() ? kDir : kDir / kind;
  const std::string stem = kind.empty() ? name : name.substr(kind.size() + 1);
  t.file = SafetensorsFile::open((dir / "traces" / (stem + ".safetensors")).string());
  t.meta = t.file->metadata();
  StreamSettings& s = t.settings;
  s.width = s.height = 64;
  s.t_index_list = nlohmann::json::parse(t.meta.at("t_index_list")).get<std::vector<int>>();
  s.num_inference_steps = std::stoi(t.meta.at("num_inference_steps"));
  s.frame_buffer_size = std::stoi(t.meta.at("frame_buffer_size"));
  s.use_denoising_batch = t.meta.at("use_denoising_batch") == "1";
  s.cfg_type = parse_cfg_type(t.meta.at("cfg_type"));
  s.guidance_scale = std::stof(t.meta.at("guidance_scale"));
  s.delta = std::stof(t.meta.at("delta"));
  s.seed = std::stoull(t.meta.at("seed"));
  return t;
}

std::vector<Image> frames_for(int call, int f) {
  static std::vector<Image> all = [] {
    std::vector<Image> v;
    for (int i = 0; i < 10; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "frame_%02d.png", i);
      v.push_back(read_image((kDir / "frames" / name).string()));
    }
    return v;
  }();
  std::vector<Image> out;
  for (int k = 0; k < f; ++k) out.push_back(all[size_t((call * f + k) % int(all.size()))]);
  return out;
}

// Runs a trace through Stream and checks every frame's latent (and the last image).
void check_trace(const std::string& name) {
  SCOPED_TRACE(name);
  Trace t = read_trace(name);
  TinyModels& m = models(kind_of(name));
  Stream stream(*m.backend, *m.unet, *m.codec, m.text.get(), t.settings);
  stream.prepare(t.meta.at("prompt"), t.meta.at("negative_prompt"));
  const Tensor ref_noise = t.file->load("init_noise", DType::F32);
  ASSERT_EQ(stream.init_noise().shape(), ref_noise.shape());
  EXPECT_EQ(rel_error(stream.init_noise().data_as<float>(), ref_noise.data_as<float>(),
                      ref_noise.numel()),
            0.0)
      << "init_noise from the seed differs from torch's";
  const Tensor latents = t.file->load("latents", DType::F32);
  const int frames = std::stoi(t.meta.at("frames"));
  const int update_at = std::stoi(t.meta.at("update_at"));
  const int f = t.settings.frame_buffer_size;
  const int64_t per_frame = latents.numel() / frames;
  double worst = 0;
  Tensor image;
  for (int i = 0; i < frames; ++i) {
    if (i == update_at) stream.update_prompt(t.meta.at("update_prompt"));
    const std::string& mode = t.meta.at("mode");
    const uint64_t copied = cpu_backend_stats(*m.backend).host_copy_bytes;
    image = mode == "txt2img"            ? stream.txt2img()
            : mode == "txt2img_sd_turbo" ? stream.txt2img_sd_turbo()
                                         : stream.img2img(frames_for(i, f));
    // f32 on the CPU: the models read and write the stream's latents and images in place.
    EXPECT_EQ(cpu_backend_stats(*m.backend).host_copy_bytes, copied)
        << "frame " << i << " copied tensors between the host and the backend";
    const double err = rel_error(stream.last_latent().data_as<float>(),
                                 latents.data_as<float>() + i * per_frame, per_frame);
    EXPECT_LE(err, 1e-4) << "frame " << i;
    worst = std::max(worst, err);
  }
  if (t.file->contains("last_image")) {
    Tensor ref = t.file->load("last_image", DType::F32);
    float* p = ref.data_as<float>();
    for (int64_t i = 0; i < ref.numel(); ++i) p[i] = std::clamp(p[i] / 2.f + 0.5f, 0.f, 1.f);
    ASSERT_EQ(image.shape(), ref.shape());
    EXPECT_LE(rel_error(image.data_as<float>(), p, ref.numel()), 1e-4) << "last image";
  }
  EXPECT_EQ(m.backend->arena().overflow_count(), 0u) << "a frame allocated outside the plan";
  ::testing::Test::RecordProperty("worst_rel_error", std::to_string(worst));
  std::printf("    %-44s worst frame rel. error %.2e\n", name.c_str(), worst);
}

std::vector<std::string> trace_names() {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(kDir / "traces"))
    names.push_back(e.path().stem().string());
  for (const auto& e : fs::directory_iterator(kDir / "sd2" / "traces"))
    names.push_back("sd2_" + e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

class StreamTrace : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamTrace, EveryFrameMatchesTheOriginal) {
  check_trace(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Stream, StreamTrace, ::testing::ValuesIn(trace_names()),
                         [](const auto& info) { return info.param; });

TEST(StreamTraceSet, CoversTheRequiredConfigurations) {
  const auto names = trace_names();
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  for (const char* cfg : {"none", "full", "self", "initialize"})
    for (const char* mode : {"batch", "seq"})
      for (int n : {1, 2, 4})
        EXPECT_TRUE(
            has(std::string("img2img_") + cfg + "_" + mode + "_n" + std::to_string(n) + "_f1"))
            << cfg << " " << mode << " n=" << n;
  EXPECT_TRUE(has("txt2img_sd_turbo_none_batch_n1_f1"));
  EXPECT_TRUE(has("sd2_txt2img_sd_turbo_none_batch_n1_f1"));
  EXPECT_TRUE(has("img2img_full_batch_n2_f1_update5"));
  EXPECT_TRUE(has("img2img_self_batch_n2_f2"));
}

// ---- settings and API errors -------------------------------------------------------------------

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(StreamSettingsCheck, BadSettingsGiveClearErrors) {
  TinyModels& m = models();
  auto make = [&](StreamSettings s) { Stream st(*m.backend, *m.unet, *m.codec, m.text.get(), s); };
  StreamSettings s;
  s.width = s.height = 64;
  s.t_index_list = {50};
  expect_error([&] { make(s); }, "t_index_list entry 50");
  s.t_index_list = {10};
  s.num_inference_steps = 60;
  expect_error([&] { make(s); }, "num_inference_steps 60");
  s.num_inference_steps = 50;
  s.width = 60;
  expect_error([&] { make(s); }, "width 60");
  s.width = 72;  // multiple of 8, but the latent 9 is not a multiple of the UNet's 4
  expect_error([&] { make(s); }, "multiples of 32");
  s.width = 64;
  s.frame_buffer_size = 0;
  expect_error([&] { make(s); }, "frame_buffer_size 0");
  expect_error([] { parse_cfg_type("half"); }, "unknown cfg_type \"half\"");
  s.frame_buffer_size = 1;
  Stream st(*m.backend, *m.unet, *m.codec, m.text.get(), s);
  expect_error([&] { st.txt2img(); }, "before prepare()");
  st.prepare("a cat");
  Image wrong{32, 32, std::vector<uint8_t>(32 * 32 * 3, 0)};
  expect_error([&] { st.img2img(wrong); }, "frame of 32x32");
  expect_error([&] { st.update_t_index_list({1, 2}); }, "update_t_index_list got 2");
  expect_error([&] { st.txt2img_sd_turbo(); }, "no guidance");  // default cfg self, g 1.2
}

TEST(StreamSettingsCheck, SeedAndTIndexUpdatesAreCheap) {
  TinyModels& m = models();
  StreamSettings s;
  s.width = s.height = 64;
  s.t_index_list = {32, 45};
  Stream st(*m.backend, *m.unet, *m.codec, m.text.get(), s);
  st.prepare("a cat");
  const Tensor noise = st.init_noise().to_host_dtype(DType::F32);
  st.set_seed(7);
  TorchGenerator g(7);
  const Tensor want = nchw_to_nhwc(g.randn(Shape{2, 4, 8, 8}));
  EXPECT_EQ(rel_error(st.init_noise().data_as<float>(), want.data_as<float>(), want.numel()), 0.0);
  EXPECT_GT(rel_error(noise.data_as<float>(), want.data_as<float>(), want.numel()), 0.1);
  st.update_t_index_list({20, 40});
  EXPECT_EQ(st.slot_constants()[0].timestep, 999 - 20 * 20);
  EXPECT_EQ(st.slot_constants()[1].timestep, 999 - 20 * 40);
  const size_t forwards = m.text->forward_count();
  st.update_prompt("a cat");  // cached: no encoder run
  EXPECT_EQ(m.text->forward_count(), forwards);
}

TEST(StreamSimilarityFilterInPipeline, SkippedFramesReturnThePreviousOutput) {
  TinyModels& m = models();
  StreamSettings s;
  s.width = s.height = 64;
  s.t_index_list = {32};
  s.similar_image_filter = true;
  s.similar_image_filter_threshold = 0.5f;
  Stream st(*m.backend, *m.unet, *m.codec, m.text.get(), s);
  st.prepare("a cat");
  const auto frame = frames_for(0, 1);
  const Tensor first = st.img2img(frame);
  // The same frame again: cos = 1, p = 1 >= any draw, so it is skipped (up to max_skip 10).
  for (int i = 0; i < 5; ++i) {
    const Tensor again = st.img2img(frame);
    EXPECT_EQ(again.data(), first.data());
  }
  EXPECT_EQ(st.skipped_frames(), 5);
}

}  // namespace
}  // namespace sd
