// Stream with and without the cross-attention K/V cache (StreamSettings::precompute_kv): the
// UNet projecting the prompt's K/V inside every pass must give the frames the cache gives, in
// every batch layout (Stream Batch with cfg self / full / initialize, sequential denoising), on
// the tiny stream fixture (fixtures/stream/unet, fixtures/taesd/tiny).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "io/image.h"
#include "models/taesd.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"
#include "pipeline/stream.h"
#include "test_support.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using test::rel_error;

const fs::path kFixtures(SD_FIXTURE_DIR);

struct KvModels {
  std::unique_ptr<Backend> backend = test::cpu_backend("f32");
  std::unique_ptr<UNet> unet = UNet::load((kFixtures / "stream" / "unet").string(), *backend);
  std::unique_ptr<Taesd> taesd = Taesd::load((kFixtures / "taesd" / "tiny").string(), *backend);
  TaesdCodec codec{*taesd};
};

KvModels& models() {
  static KvModels m;
  return m;
}

// Frame k: moving gradients and a checkerboard.
Image test_frame(int w, int h, int k) {
  Image img;
  img.width = w, img.height = h;
  img.rgb.resize(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * size_t(w) + size_t(x)) * 3];
      p[0] = uint8_t((255 * x / (w - 1) + 20 * k) % 256);
      p[1] = uint8_t(255 * y / (h - 1));
      p[2] = ((x / 8 + y / 8 + k) % 2) ? 200 : 40;
    }
  return img;
}

// The frames of `frames` img2img calls with the given settings, one host tensor per call.
std::vector<Tensor> run(StreamSettings s, bool precompute_kv, int frames) {
  KvModels& m = models();
  s.precompute_kv = precompute_kv;
  const int64_t d = m.unet->config().cross_attention_dim;
  Stream st(*m.backend, *m.unet, m.codec, nullptr, s);
  st.prepare_embeddings(hash_host_tensor("test.cond", Shape{77, d}, 1.f),
                        hash_host_tensor("test.uncond", Shape{77, d}, 1.f));
  std::vector<Tensor> out;
  for (int k = 0; k < frames; ++k) {
    std::vector<Image> in;
    for (int f = 0; f < s.frame_buffer_size; ++f)
      in.push_back(test_frame(s.width, s.height, k + f));
    out.push_back(st.img2img(in).to_host_dtype(DType::F32));  // a copy: outputs may be reused
  }
  return out;
}

void expect_same_frames(const StreamSettings& s, const std::string& what) {
  const int frames = int(s.t_index_list.size()) + 1;  // past the pipeline's lag
  const std::vector<Tensor> cached = run(s, true, frames);
  const std::vector<Tensor> plain = run(s, false, frames);
  ASSERT_EQ(cached.size(), plain.size());
  double worst = 0;
  for (size_t k = 0; k < cached.size(); ++k) {
    const double err = rel_error(plain[k], cached[k]);
    EXPECT_LE(err, 1e-5) << what << ", frame " << k;
    worst = std::max(worst, err);
  }
  std::printf("  %s: largest rel error %.3g over %d frames\n", what.c_str(), worst, frames);
}

StreamSettings small(CfgType cfg, bool batch) {
  StreamSettings s;
  s.width = s.height = 64;
  s.t_index_list = {20, 40};
  s.cfg_type = cfg;
  s.guidance_scale = 1.4f;
  s.use_denoising_batch = batch;
  return s;
}

TEST(StreamKvCache, WithoutPrecomputedKvTheFramesAreTheSame) {
  expect_same_frames(small(CfgType::Self, true), "stream batch, cfg self");
  expect_same_frames(small(CfgType::Full, true), "stream batch, cfg full");
  expect_same_frames(small(CfgType::Initialize, true), "stream batch, cfg initialize");
  StreamSettings two = small(CfgType::Self, true);
  two.frame_buffer_size = 2;
  expect_same_frames(two, "stream batch, 2 frames per call");
  expect_same_frames(small(CfgType::Full, false), "sequential, cfg full");
}

TEST(StreamKvCache, PromptUpdatesReachThePlainPath) {
  // A new prompt changes the frames the same way with and without the cache.
  KvModels& m = models();
  const int64_t d = m.unet->config().cross_attention_dim;
  std::vector<Tensor> out;
  for (bool precompute : {true, false}) {
    StreamSettings s = small(CfgType::Self, true);
    s.t_index_list = {30};
    s.precompute_kv = precompute;
    Stream st(*m.backend, *m.unet, m.codec, nullptr, s);
    st.prepare_embeddings(hash_host_tensor("test.cond", Shape{77, d}, 1.f),
                          hash_host_tensor("test.uncond", Shape{77, d}, 1.f));
    const Tensor before = st.img2img(test_frame(64, 64, 0)).to_host_dtype(DType::F32);
    st.update_embeddings(hash_host_tensor("test.cond2", Shape{77, d}, 1.f));
    out.push_back(st.img2img(test_frame(64, 64, 0)).to_host_dtype(DType::F32));
    EXPECT_GT(rel_error(out.back(), before), 1e-4) << "the new prompt changed nothing";
  }
  EXPECT_LE(rel_error(out[1], out[0]), 1e-5);
}

}  // namespace
}  // namespace sd
