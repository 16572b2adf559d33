// Shared by the public-API tests: the committed tiny model (fixtures/tiny_sd + the tiny TAESD),
// its 64x64 frames, and helpers to run frames through a stream as f32.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::test {

inline const std::string kTinyModel = std::string(SD_FIXTURE_DIR) + "/tiny_sd";
inline const std::string kTinyTaesd = std::string(SD_FIXTURE_DIR) + "/taesd/tiny";

inline ModelOptions tiny_options() {
  ModelOptions o;
  o.taesd = kTinyTaesd;
  o.dtype = "f32";
  o.threads = 1;
  return o;
}

// One shared tiny model per test process (loading is the slow part; streams are cheap).
inline const Model& tiny_model() {
  static const Model m = Model::load(kTinyModel, tiny_options());
  return m;
}

// The 64x64 pipeline-fixture frame k (0..9).
inline Image frame(int k) {
  char name[64];
  std::snprintf(name, sizeof name, "%s/stream/frames/frame_%02d.png", SD_FIXTURE_DIR, k % 10);
  return read_image(name);
}

inline StreamConfig tiny_config() {
  StreamConfig c;
  c.width = c.height = 64;
  c.t_index_list = {32, 45};
  c.cfg_type = CfgType::Self;
  c.guidance_scale = 1.4f;
  c.delta = 0.8f;
  c.prompt = "a photo of a cat";
  c.seed = 2;
  return c;
}

// An RGB image as f32 [H, W, 3] in [0, 1] (what img2img_f32 takes).
inline std::vector<float> to_f32(const Image& img) {
  std::vector<float> v(img.rgb.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(img.rgb[i]) / 255.f;
  return v;
}

// One img2img_f32 call on `img` (scaled to cover the stream's size first, as the u8 path
// does); the output as a vector.
inline std::vector<float> step(Stream& s, const Image& img) {
  const StreamConfig c = s.config();
  const Image fitted =
      img.width == c.width && img.height == c.height ? img : resize_cover(img, c.width, c.height);
  std::vector<float> out(size_t(c.width) * size_t(c.height) * 3);
  s.img2img_f32(to_f32(fitted).data(), out.data(), c.width, c.height);
  return out;
}

// ‖a − b‖ / ‖b‖.
inline double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  if (a.size() != b.size()) return 1e30;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace streamdiff::test
