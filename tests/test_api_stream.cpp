// The public C++ API's streams on the committed tiny model: the API gives the engine's frames,
// runtime setters give the frames of a freshly prepared stream with the new settings, plans are
// cached per shape, prompt and seed blending, the similarity filter against real frames, two
// streams sharing one model on two threads, and no allocation per frame.
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>
#include <thread>

#include "alloc_counter.h"
#include "api_test_support.h"
#include "core/tensor.h"
#include "models/prompt_encoder.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "pipeline/stream.h"
#include "streamdiff/tools.hpp"

namespace streamdiff {
namespace {

using test::frame;
using test::rel_diff;
using test::step;
using test::tiny_config;
using test::tiny_model;

constexpr int kFrames = 9;

std::vector<std::vector<float>> run(Stream& s, int first, int last) {
  std::vector<std::vector<float>> out;
  for (int k = first; k <= last; ++k) out.push_back(step(s, frame(k)));
  return out;
}

TEST(ApiStream, GivesTheEnginesFrames) {
  // The engine's own Stream on the same files, warmed up as the CLI always did (n - 1 extra
  // calls on the first frame): the API's frames are the same, bit for bit.
  const StreamConfig c = tiny_config();
  Stream api(tiny_model(), c);
  sd::BackendOptions bo;
  bo.dtype = "f32";
  bo.threads = 1;
  auto backend = sd::make_backend(bo);
  auto unet = sd::UNet::load(test::kTinyModel, *backend);
  auto text = sd::PromptEncoder::load(test::kTinyModel, *backend);
  auto taesd = sd::Taesd::load(test::kTinyTaesd, *backend);
  sd::TaesdCodec codec(*taesd);
  sd::StreamSettings s;
  s.width = c.width, s.height = c.height;
  s.t_index_list = c.t_index_list;
  s.guidance_scale = c.guidance_scale, s.delta = c.delta, s.seed = c.seed;
  sd::Stream engine(*backend, *unet, codec, text.get(), s);
  engine.prepare(c.prompt, c.negative_prompt);
  for (int k = 0; k < 5; ++k) {
    const std::vector<float> ours = step(api, frame(k));
    const std::vector<float> in = test::to_f32(frame(k));
    sd::Tensor x = sd::Tensor::host(sd::Shape{1, 64, 64, 3}, sd::DType::F32);
    for (size_t i = 0; i < in.size(); ++i) x.data_as<float>()[i] = 2.f * in[i] - 1.f;
    if (k == 0) engine.img2img_tensor(x);  // n - 1 = 1 warm-up call
    const sd::Tensor ref = engine.img2img_tensor(x);
    const std::vector<float> r(ref.data_as<float>(), ref.data_as<float>() + ref.numel());
    EXPECT_EQ(rel_diff(ours, r), 0.0) << "frame " << k;
  }
}

// A change made after 3 frames must give, once the frames in flight have left the pipeline
// (n frames), the frames of a stream freshly prepared with the new settings; where the change
// needs a new plan, the new plan starts fresh, so every frame after the change matches a stream
// started at that frame.
struct Change {
  const char* name;
  std::function<void(Stream&)> apply;
  std::function<void(StreamConfig&)> fresh;
  bool new_plan;
};

TEST(ApiStream, RuntimeSettersGiveAFreshStreamsFrames) {
  const std::vector<Change> changes = {
      {"prompt", [](Stream& s) { s.set_prompt("a dog"); },
       [](StreamConfig& c) { c.prompt = "a dog"; }, false},
      {"guidance", [](Stream& s) { s.set_guidance_scale(2.0f); },
       [](StreamConfig& c) { c.guidance_scale = 2.0f; }, false},
      {"delta", [](Stream& s) { s.set_delta(0.5f); }, [](StreamConfig& c) { c.delta = 0.5f; },
       false},
      {"seed", [](Stream& s) { s.set_seed(7); }, [](StreamConfig& c) { c.seed = 7; }, false},
      {"t_index same length",
       [](Stream& s) {
         s.set_t_index_list({20, 40});
       },
       [](StreamConfig& c) {
         c.t_index_list = {20, 40};
       },
       false},
      {"t_index other length",
       [](Stream& s) {
         s.set_t_index_list({10, 30, 45});
       },
       [](StreamConfig& c) {
         c.t_index_list = {10, 30, 45};
       },
       true},
      {"resolution", [](Stream& s) { s.set_resolution(96, 64); },
       [](StreamConfig& c) { c.width = 96; }, true},
      {"cfg type", [](Stream& s) { s.set_cfg_type(CfgType::Initialize); },
       [](StreamConfig& c) { c.cfg_type = CfgType::Initialize; }, true},
      {"clip_skip",
       [](Stream& s) {
         StreamConfig c = s.config();
         c.clip_skip = 1;
         s.set_config(c);
       },
       [](StreamConfig& c) { c.clip_skip = 1; }, false},
  };
  for (const Change& ch : changes) {
    SCOPED_TRACE(ch.name);
    Stream a(tiny_model(), tiny_config());
    run(a, 0, 2);
    ch.apply(a);
    const auto after = run(a, 3, kFrames - 1);
    StreamConfig c = tiny_config();
    ch.fresh(c);
    Stream b(tiny_model(), c);
    const auto fresh = run(b, 0, kFrames - 1);
    const int n = int(c.t_index_list.size());
    for (int k = 3 + n; k < kFrames; ++k)
      EXPECT_LE(rel_diff(after[size_t(k - 3)], fresh[size_t(k)]), 1e-5) << "frame " << k;
    if (ch.new_plan) {
      Stream started(tiny_model(), c);
      const auto from_here = run(started, 3, kFrames - 1);
      for (size_t k = 0; k < after.size(); ++k)
        EXPECT_LE(rel_diff(after[k], from_here[k]), 1e-5) << "frame " << k + 3;
    }
  }
}

TEST(ApiStream, ClipSkipChangesThePromptEmbeddingAndIsChecked) {
  Stream a(tiny_model(), tiny_config());
  StreamConfig c = tiny_config();
  c.clip_skip = 1;  // the tiny text encoder has 2 layers: 1 is the most
  Stream b(tiny_model(), c);
  EXPECT_GT(rel_diff(run(a, 0, 3).back(), run(b, 0, 3).back()), 1e-3);
  c.clip_skip = 2;
  try {
    Stream bad(tiny_model(), c);
    ADD_FAILURE() << "clip_skip 2 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("clip_skip must be in [0, 1]"), std::string::npos)
        << e.what();
  }
}

TEST(ApiStream, NegativePromptAppliesToFullGuidance) {
  StreamConfig c = tiny_config();
  c.cfg_type = CfgType::Full;
  Stream a(tiny_model(), c);
  run(a, 0, 2);
  a.set_negative_prompt("blurry");
  const auto after = run(a, 3, kFrames - 1);
  c.negative_prompt = "blurry";
  Stream b(tiny_model(), c);
  const auto fresh = run(b, 0, kFrames - 1);
  for (int k = 5; k < kFrames; ++k)
    EXPECT_LE(rel_diff(after[size_t(k - 3)], fresh[size_t(k)]), 1e-5);
  Stream plain(tiny_model(), tiny_config());
  EXPECT_GT(rel_diff(after.back(), run(plain, 0, kFrames - 1).back()), 1e-3);
}

TEST(ApiStream, PlansAreCachedPerShape) {
  Stream s(tiny_model(), tiny_config());
  run(s, 0, 1);
  s.set_t_index_list({20, 40});  // same length: no new plan
  run(s, 2, 2);
  EXPECT_EQ(s.stats().plans, 1);
  s.set_resolution(96, 64);
  run(s, 3, 4);
  EXPECT_EQ(s.stats().plans, 2);
  s.set_resolution(64, 64);  // back: the cached plan, fresh state (warms up again)
  const auto back = run(s, 5, 8);
  EXPECT_EQ(s.stats().plans, 2);
  StreamConfig c = tiny_config();
  c.t_index_list = {20, 40};
  Stream fresh(tiny_model(), c);
  const auto ref = run(fresh, 5, 8);
  for (size_t k = 0; k < back.size(); ++k) EXPECT_LE(rel_diff(back[k], ref[k]), 1e-5) << k;
}

TEST(ApiStream, PromptBlendingWeightsOneZeroIsTheFirstPrompt) {
  for (Blend mode : {Blend::Linear, Blend::Slerp}) {
    Stream single(tiny_model(), tiny_config());
    Stream blended(tiny_model(), tiny_config());
    blended.set_prompt_blend({{"a photo of a cat", 1.f}, {"an oil painting", 0.f}}, mode);
    Stream half(tiny_model(), tiny_config());
    half.set_prompt_blend({{"a photo of a cat", 0.5f}, {"an oil painting", 0.5f}}, mode);
    StreamConfig other = tiny_config();
    other.prompt = "an oil painting";
    Stream second(tiny_model(), other);
    for (int k = 0; k < 3; ++k) {
      const auto a = step(single, frame(k)), b = step(blended, frame(k));
      const auto h = step(half, frame(k)), o = step(second, frame(k));
      EXPECT_EQ(a, b) << "frame " << k;  // bit for bit
      EXPECT_GT(rel_diff(h, a), 1e-4);
      EXPECT_GT(rel_diff(h, o), 1e-4);
    }
  }
}

TEST(ApiStream, SeedBlendingWeightsOneZeroIsTheFirstSeed) {
  for (Blend mode : {Blend::Linear, Blend::Slerp}) {
    Stream single(tiny_model(), tiny_config());
    Stream blended(tiny_model(), tiny_config());
    blended.set_seed_blend({{2, 1.f}, {99, 0.f}}, mode);
    Stream half(tiny_model(), tiny_config());
    half.set_seed_blend({{2, 0.5f}, {99, 0.5f}}, mode);
    StreamConfig other = tiny_config();
    other.seed = 99;
    Stream second(tiny_model(), other);
    for (int k = 0; k < 3; ++k) {
      const auto a = step(single, frame(k)), b = step(blended, frame(k));
      const auto h = step(half, frame(k)), o = step(second, frame(k));
      EXPECT_EQ(a, b) << "frame " << k;
      EXPECT_GT(rel_diff(h, a), 1e-4);
      EXPECT_GT(rel_diff(h, o), 1e-4);
    }
    EXPECT_EQ(blended.config().seed, 2u);
  }
}

TEST(ApiStream, BadBlendsAreRefusedAndChangeNothing) {
  Stream s(tiny_model(), tiny_config());
  auto status_of = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.status();
    }
    return Status::Ok;
  };
  EXPECT_EQ(status_of([&] {
              s.set_prompt_blend({{"a", 1}, {"b", 1}, {"c", 1}}, Blend::Slerp);
            }),
            Status::InvalidArgument);
  EXPECT_EQ(status_of([&] { s.set_prompt_blend({{"a", -1}, {"b", 2}}); }), Status::InvalidArgument);
  EXPECT_EQ(status_of([&] { s.set_seed_blend({{1, 0}, {2, 0}}); }), Status::InvalidArgument);
  EXPECT_EQ(status_of([&] { s.set_prompt_blend({}); }), Status::InvalidArgument);
  EXPECT_EQ(s.config().prompt, "a photo of a cat");
}

// Three clearly different frames (the portrait, its mirror image, a grey copy turned by 90
// degrees): the filter at 0.98 skips none of them, also not while the first frame warms the
// pipeline up; each output shows its input n - 1 = 1 frames later.
TEST(ApiStream, SimilarityFilterComparesRealFramesOnly) {
  const Image portrait = resize_cover(read_image(SD_DATA_DIR "/images/portrait.png"), 64, 64);
  Image mirror = portrait, grey = portrait, inverted = portrait;
  for (uint8_t& v : inverted.rgb) v = uint8_t(255 - v);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) {
        mirror.rgb[size_t((y * 64 + x) * 3 + c)] = portrait.rgb[size_t((y * 64 + 63 - x) * 3 + c)];
        const uint8_t* p = &portrait.rgb[size_t((x * 64 + (63 - y)) * 3)];
        grey.rgb[size_t((y * 64 + x) * 3 + c)] = uint8_t((p[0] + p[1] + p[2]) / 3);
      }
  StreamConfig c = tiny_config();
  c.similarity_filter = true;
  c.similarity_threshold = 0.98f;
  auto run3 = [&](const Image& second) {
    Stream s(tiny_model(), c);
    std::vector<std::vector<float>> out;
    for (const Image* f : std::vector<const Image*>{&portrait, &second, &grey})
      out.push_back(step(s, *f));
    EXPECT_EQ(s.stats().skipped, 0);
    return out;
  };
  const auto a = run3(mirror);
  const auto b = run3(inverted);          // the second input changed
  EXPECT_EQ(a[0], b[0]);                  // output 0 shows input 0
  EXPECT_EQ(a[1], b[1]);                  // output 1 shows input 0 too (the lag)
  EXPECT_GT(rel_diff(a[2], b[2]), 1e-3);  // output 2 shows input 1
  EXPECT_GT(rel_diff(a[1], a[2]), 1e-3);

  // The same frame again and again is skipped (the previous output is given again).
  c.similarity_threshold = 0.5f;
  Stream same(tiny_model(), c);
  for (int k = 0; k < 6; ++k) step(same, portrait);
  EXPECT_GT(same.stats().skipped, 0);
}

TEST(ApiStream, TwoStreamsOnOneModelOnTwoThreadsGiveTheSequentialFrames) {
  StreamConfig c1 = tiny_config(), c2 = tiny_config();
  c2.prompt = "a watercolor landscape";
  c2.seed = 5;
  c2.cfg_type = CfgType::Full;
  auto frames_of = [](const StreamConfig& c) {
    Stream s(tiny_model(), c);
    return run(s, 0, 5);
  };
  const auto ref1 = frames_of(c1), ref2 = frames_of(c2);
  std::vector<std::vector<float>> got1, got2;
  std::thread t1([&] { got1 = frames_of(c1); });
  std::thread t2([&] { got2 = frames_of(c2); });
  t1.join();
  t2.join();
  EXPECT_EQ(got1, ref1);
  EXPECT_EQ(got2, ref2);
}

TEST(ApiStream, SettersFromAnotherThreadWhileFramesRun) {
  Stream s(tiny_model(), tiny_config());
  std::atomic<bool> done{false};
  std::thread ui([&] {
    for (int i = 0; !done; ++i) {
      s.set_prompt(i % 2 ? "a dog" : "a cat");
      s.set_guidance_scale(1.0f + float(i % 5) * 0.2f);
      (void)s.config();
      (void)s.stats();
      std::this_thread::yield();
    }
  });
  for (int k = 0; k < 6; ++k) step(s, frame(k));
  done = true;
  ui.join();
  EXPECT_EQ(s.stats().frames_out, 6);
}

TEST(ApiStream, FramesAllocateNothingOnceRunning) {
  Stream s(tiny_model(), tiny_config());
  const Image in = frame(0);
  Image out = in;
  for (int k = 0; k < 3; ++k) s.img2img(in.view(), out.mutable_view());  // plans, warm-up
  std::vector<Image> inputs;
  for (int k = 1; k < 6; ++k) inputs.push_back(frame(k));
  const int64_t storages = sd::host_storage_allocations();
  sd::test::count_large_allocations(true);
  for (const Image& f : inputs) s.img2img(f.view(), out.mutable_view());
  sd::test::count_large_allocations(false);
  EXPECT_EQ(sd::host_storage_allocations(), storages) << "a frame allocated tensor memory";
  EXPECT_EQ(sd::test::large_allocations(), 0) << "large heap allocations in steady frames";
  // An input of another size is resized first: that path allocates (documented), this one not.
  const Image big = resize_cover(frame(0), 96, 80);
  sd::test::count_large_allocations(true);
  s.img2img(big.view(), out.mutable_view());
  sd::test::count_large_allocations(false);
  EXPECT_GT(sd::test::large_allocations(), 0) << "the counter counts nothing";
}

TEST(ApiStream, LeavesTheCallersOpenMpThreadCountAlone) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(3);
  ModelOptions o = test::tiny_options();
  o.threads = 1;
  Model m = Model::load(test::kTinyModel, o);
  EXPECT_EQ(omp_get_max_threads(), 3);
  Stream s(m, tiny_config());
  step(s, frame(0));
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(before);
}

MutableImageView out_view(std::vector<uint8_t>& buf) {
  return {buf.data(), 64, 64, 0, PixelFormat::RGB8};
}

TEST(ApiStream, BadArgumentsNameTheProblem) {
  auto error_of = [](const std::function<void()>& f) -> std::pair<Status, std::string> {
    try {
      f();
    } catch (const Error& e) {
      return {e.status(), e.what()};
    }
    return {Status::Ok, ""};
  };
  auto [st, msg] = error_of([] { Model::load("/no/such/model", test::tiny_options()); });
  EXPECT_EQ(st, Status::Io);
  EXPECT_NE(msg.find("/no/such/model"), std::string::npos) << msg;
  ModelOptions o = test::tiny_options();
  o.device = "tpu";
  EXPECT_EQ(error_of([&] { Model::load(test::kTinyModel, o); }).first, Status::InvalidArgument);
  o = test::tiny_options();
  o.loras = {{"/no/lora.safetensors", 1.f}};
  std::tie(st, msg) = error_of([&] { Model::load(test::kTinyModel, o); });
  EXPECT_EQ(st, Status::Io);
  EXPECT_NE(msg.find("/no/lora.safetensors"), std::string::npos) << msg;
  if (!cuda_available()) {
    o = test::tiny_options();
    o.device = "cuda";
    EXPECT_EQ(error_of([&] { Model::load(test::kTinyModel, o); }).first, Status::Unsupported);
  }

  StreamConfig c = tiny_config();
  c.width = 60;
  std::tie(st, msg) = error_of([&] { Stream(tiny_model(), c); });
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(msg.find("multiples of 32"), std::string::npos) << msg;
  c = tiny_config();
  c.t_index_list = {45, 32};
  EXPECT_NE(error_of([&] { Stream(tiny_model(), c); }).second.find("ascending"), std::string::npos);
  c = tiny_config();
  c.guidance_scale = -1;
  EXPECT_EQ(error_of([&] { Stream(tiny_model(), c); }).first, Status::InvalidArgument);

  Stream s(tiny_model(), tiny_config());
  EXPECT_EQ(error_of([&] { s.set_t_index_list({50}); }).first, Status::InvalidArgument);
  EXPECT_EQ(s.config().t_index_list, (std::vector<int>{32, 45}));  // unchanged
  const Image in = frame(0);
  std::vector<uint8_t> buf(64 * 64 * 4);
  MutableImageView small{buf.data(), 32, 32, 0, PixelFormat::RGB8};
  std::tie(st, msg) = error_of([&] { s.img2img(in.view(), small); });
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(msg.find("32x32"), std::string::npos) << msg;
  MutableImageView null_out{nullptr, 64, 64, 0, PixelFormat::RGB8};
  EXPECT_EQ(error_of([&] { s.img2img(in.view(), null_out); }).first, Status::InvalidArgument);
  MutableImageView short_rows{buf.data(), 64, 64, 10, PixelFormat::RGB8};
  std::tie(st, msg) = error_of([&] { s.img2img(in.view(), short_rows); });
  EXPECT_NE(msg.find("stride"), std::string::npos) << msg;
  EXPECT_EQ(error_of([&] { s.submit(in.view()); }).first, Status::Closed);
  EXPECT_EQ(error_of([&] { s.txt2img_f32(nullptr, 64, 64); }).first, Status::InvalidArgument);
  std::vector<float> f32(64 * 64 * 3);
  std::tie(st, msg) = error_of([&] { s.img2img_f32(f32.data(), f32.data(), 96, 64); });
  EXPECT_NE(msg.find("96x64"), std::string::npos) << msg;
  std::tie(st, msg) = error_of([&] { s.txt2img(out_view(buf), true); });
  EXPECT_EQ(st, Status::InvalidArgument);
  EXPECT_NE(msg.find("one t_index"), std::string::npos) << msg;
  Stream moved = std::move(s);
  EXPECT_EQ(error_of([&] { s.set_prompt("x"); }).first, Status::InvalidArgument);
  EXPECT_NO_THROW(moved.set_prompt("x"));
}

TEST(ApiStream, InputFormatsAndStridesGiveTheSameFrames) {
  const Image rgb = frame(3);
  std::vector<uint8_t> bgra(64 * 64 * 4), padded(64 * 200);
  for (int i = 0; i < 64 * 64; ++i) {
    bgra[size_t(i) * 4 + 0] = rgb.rgb[size_t(i) * 3 + 2];
    bgra[size_t(i) * 4 + 1] = rgb.rgb[size_t(i) * 3 + 1];
    bgra[size_t(i) * 4 + 2] = rgb.rgb[size_t(i) * 3 + 0];
    bgra[size_t(i) * 4 + 3] = 7;  // alpha is ignored
  }
  for (int y = 0; y < 64; ++y)
    std::copy(rgb.rgb.begin() + y * 192, rgb.rgb.begin() + (y + 1) * 192, padded.begin() + y * 200);
  std::vector<uint8_t> out1(64 * 64 * 3), out2(64 * 64 * 3), out3(64 * 64 * 4);
  Stream a(tiny_model(), tiny_config()), b(tiny_model(), tiny_config()),
      c(tiny_model(), tiny_config());
  a.img2img(rgb.view(), {out1.data(), 64, 64, 0, PixelFormat::RGB8});
  b.img2img({bgra.data(), 64, 64, 0, PixelFormat::BGRA8},
            {out2.data(), 64, 64, 0, PixelFormat::RGB8});
  c.img2img({padded.data(), 64, 64, 200, PixelFormat::RGB8},
            {out3.data(), 64, 64, 0, PixelFormat::BGRA8});
  EXPECT_EQ(out1, out2);
  for (int i = 0; i < 64 * 64; ++i) {
    EXPECT_EQ(out3[size_t(i) * 4 + 2], out1[size_t(i) * 3 + 0]);
    EXPECT_EQ(out3[size_t(i) * 4 + 0], out1[size_t(i) * 3 + 2]);
    EXPECT_EQ(out3[size_t(i) * 4 + 3], 255);
  }
}

TEST(ApiStream, Txt2ImgAndBatchedFrames) {
  StreamConfig c = tiny_config();
  c.frame_buffer_size = 2;
  Stream s(tiny_model(), c);
  const Image f0 = frame(0), f1 = frame(1);
  std::vector<uint8_t> o0(64 * 64 * 3), o1(64 * 64 * 3);
  const ImageView in[2] = {f0.view(), f1.view()};
  const MutableImageView out[2] = {{o0.data(), 64, 64, 0, PixelFormat::RGB8},
                                   {o1.data(), 64, 64, 0, PixelFormat::RGB8}};
  const FrameInfo info = s.img2img(in, out, 2);
  EXPECT_EQ(info.index, 0);
  EXPECT_NE(o0, o1);
  EXPECT_THROW(s.img2img(f0.view(), out[0]), Error);  // one frame given, two expected
  s.txt2img(out, 2);
  c.frame_buffer_size = 1;
  c.t_index_list = {45};
  c.cfg_type = CfgType::None;
  Stream turbo(tiny_model(), c);
  std::vector<float> img(64 * 64 * 3, -1.f);
  turbo.txt2img_f32(img.data(), 64, 64, true);
  for (float v : img) ASSERT_TRUE(v >= 0.f && v <= 1.f);
}

}  // namespace
}  // namespace streamdiff
