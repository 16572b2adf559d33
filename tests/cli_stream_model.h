// The tiny diffusers-layout model folder the CLI tests run on: the committed tiny model
// (fixtures/tiny_sd: the tiny SD 1.x-like UNet of the pipeline fixtures and a hash-random CLIP
// text encoder, built-in vocabulary; tools/make_tiny_sd.py) copied into a temp folder, plus the
// tiny AutoencoderKL (fixtures/vae/tiny/vae) as its vae/.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "io/image.h"

namespace sd::test {

inline const std::filesystem::path kTinyModel = std::filesystem::path(SD_FIXTURE_DIR) / "tiny_sd";
inline const std::filesystem::path kTinyTaesd =
    std::filesystem::path(SD_FIXTURE_DIR) / "taesd" / "tiny";

// unet/, text_encoder/ and vae/ under `model` (created).
inline void write_tiny_stream_model(const std::filesystem::path& model) {
  namespace fs = std::filesystem;
  fs::create_directories(model);
  fs::copy(kTinyModel, model, fs::copy_options::recursive);  // follows the unet/ link
  fs::copy(fs::path(SD_FIXTURE_DIR) / "vae" / "tiny" / "vae", model / "vae");
}

// A fresh temp folder for one test suite, "sd_<name>_<pid>", holding the tiny model as model/.
inline std::filesystem::path make_model_workspace(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path root =
      fs::temp_directory_path() / ("sd_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(root);
  write_tiny_stream_model(root / "model");
  return root;
}

// Frame k of a moving colour pattern (stripes that shift 10 levels a frame, a checkerboard that
// flips): every frame differs from the last, so no similarity filter skips it.
inline Image moving_pattern(int k, int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * w + x) * 3];
      p[0] = uint8_t((x * 4 + k * 10) & 255);
      p[1] = uint8_t(y * 3);
      p[2] = uint8_t(((x / 8 + y / 8 + k) % 2) * 200);
    }
  return img;
}

}  // namespace sd::test
