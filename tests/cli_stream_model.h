// The tiny diffusers-layout model folder the CLI tests run on: the committed tiny model
// (fixtures/tiny_sd: the tiny SD 1.x-like UNet of the pipeline fixtures and a hash-random CLIP
// text encoder, built-in vocabulary; tools/make_tiny_sd.py) copied into a temp folder, plus the
// tiny AutoencoderKL (fixtures/vae/tiny/vae) as its vae/.
#pragma once

#include <filesystem>

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

}  // namespace sd::test
