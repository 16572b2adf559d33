// streamdiff::inspect_model on the committed fixtures: the size multiple from the configs (the
// VAE's or the TAESD's downscale x the UNet's), the parts, the text encoder's layers, the name
// and the preset hint (also for a Hugging Face cache snapshot), and the errors, all without
// loading a weight.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "cli_stream_model.h"
#include "streamdiff/tools.hpp"

namespace streamdiff {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);

class ApiInspect : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = sd::test::make_model_workspace("api_inspect");
    const fs::path snapshot = root_ / "models--someone--tiny-Turbo" / "snapshots" / "0123abc";
    fs::create_directories(snapshot.parent_path());
    fs::create_directory_symlink(root_ / "model", snapshot);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path root_;
};

fs::path ApiInspect::root_;

TEST_F(ApiInspect, FactsFromTheConfigs) {
  // Tiny UNet: 3 levels (x4); tiny AutoencoderKL: 3 levels (x4); tiny TAESD: x8.
  ModelSummary s = inspect_model((root_ / "model").string());
  EXPECT_EQ(s.kind, "diffusers folder");
  EXPECT_EQ(s.family, "sd1");
  EXPECT_EQ(s.size_multiple, 16);
  EXPECT_TRUE(s.has_vae);
  EXPECT_TRUE(s.has_text_encoder);
  EXPECT_EQ(s.text_layers, 2);
  EXPECT_EQ(s.name, "model");
  EXPECT_EQ(s.suggested_preset, "sd15-lcm");
  s = inspect_model((root_ / "model").string(), (kFixtures / "taesd" / "tiny").string());
  EXPECT_EQ(s.size_multiple, 32);
  // A Hugging Face cache snapshot is named by its repository folder.
  s = inspect_model((root_ / "models--someone--tiny-Turbo" / "snapshots" / "0123abc").string());
  EXPECT_EQ(s.name, "models--someone--tiny-Turbo");
  EXPECT_EQ(s.suggested_preset, "sd-turbo");
}

TEST_F(ApiInspect, WhatModelLoadCannotTakeIsRefused) {
  auto error_of = [](const std::string& path) {
    try {
      inspect_model(path);
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::Io) << e.what();
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of((root_ / "nowhere").string()).find("does not exist"), std::string::npos);
  EXPECT_NE(error_of((root_ / "model" / "vae").string()).find("unet/config.json"),
            std::string::npos);
  // A single file whose UNet is not SD 1.5's or SD 2.1's: no config can be assumed for it.
  EXPECT_NE(error_of((kFixtures / "ldm" / "sd1_tiny.safetensors").string())
                .find("matches neither SD 1.5"),
            std::string::npos);
  EXPECT_NE(error_of((kFixtures / "taesd" / "input_128x192.png").string())
                .find("not a .safetensors checkpoint"),
            std::string::npos);
}

}  // namespace
}  // namespace streamdiff
