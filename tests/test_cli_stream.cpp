// `streamdiff img2img` / `txt2img` run as a user would, on a tiny diffusers-layout model folder
// assembled in a temp dir from the committed fixtures: the tiny SD 1.x-like UNet
// (fixtures/stream/unet), the sd15 tokenizer, and a text encoder with the same hash-random
// weights tests/test_stream.cpp uses (ClipTextModel::hash_param written to a safetensors file,
// config from fixtures/stream/prompt_embeds.safetensors), so no text encoder is committed. VAE:
// TAESD (--taesd fixtures/taesd/tiny) or the tiny AutoencoderKL (fixtures/vae/tiny/vae).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_stream_model.h"
#include "io/image.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);

class CliStream : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_stream");
    // Inputs: two 64x64 frames and a 192x128 image (resized to cover 64x64).
    const fs::path in = root_ / "in";
    fs::create_directories(in);
    fs::copy(kFixtures / "stream" / "frames" / "frame_00.png", in / "a.png");
    fs::copy(kFixtures / "stream" / "frames" / "frame_01.png", in / "b.png");
    fs::copy(kFixtures / "taesd" / "input_128x192.png", in / "c.png");
    std::ofstream(in / "notes.txt") << "not an image";
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string model() { return quote((root_ / "model").string()); }
  static std::string taesd() { return quote((kFixtures / "taesd" / "tiny").string()); }
  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::string common() {
    return "--model " + model() + " --prompt 'a cat' --dtype f32 ";  // steps 50, t-index 32,45
  }

  static fs::path root_;
};

fs::path CliStream::root_;

TEST_F(CliStream, Img2imgFolderWithTaesdWritesEveryFrame) {
  const RunResult r =
      run_cli("img2img " + common() + "--taesd " + taesd() + " --input " + quote(path("in")) +
              " --output " + quote(path("out")) + " --width 64 --height 64 --cfg self" +
              " --stats-json " + quote(path("stats.json")));
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* name : {"a.png", "b.png", "c.png"}) {
    const fs::path p = root_ / "out" / name;
    ASSERT_TRUE(fs::exists(p)) << p << "\n" << r.output;
    const Image img = read_image(p.string());
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(img.height, 64);
    const auto [lo, hi] = std::minmax_element(img.rgb.begin(), img.rgb.end());
    EXPECT_GT(int(*hi) - int(*lo), 10) << name << ": a flat image";
  }
  EXPECT_FALSE(fs::exists(root_ / "out" / "notes.txt"));
  EXPECT_NE(r.output.find("frames 3, skipped 0, dropped 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("p99"), std::string::npos) << r.output;
  // The same numbers for scripts.
  std::ifstream in(path("stats.json"));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(j.is_object()) << "stats.json is not JSON";
  EXPECT_EQ(j["frames_written"], 3);
  EXPECT_EQ(j["frames_dropped"], 0);
  ASSERT_EQ(j["written_s"].size(), 3u);
  ASSERT_EQ(j["frame_compute_ms"].size(), 3u);
  for (const auto& ms : j["frame_compute_ms"]) EXPECT_GT(ms.get<double>(), 0.0);
  EXPECT_LE(j["written_s"][0].get<double>(), j["written_s"][2].get<double>());
  EXPECT_GT(j["latency_ms"]["p50"].get<double>(), 0.0);
  EXPECT_GT(j["prepare_ms"].get<double>(), 0.0);
}

TEST_F(CliStream, Img2imgSingleImageWithAutoencoderKLAndFilter) {
  const std::string out = path("single.jpg");
  const RunResult r = run_cli("img2img " + common() + "--input " + quote(path("in/c.png")) +
                              " --output " + quote(out) +
                              " --width 48 --height 32 --cfg full --guidance 1.5 "
                              "--negative blurry --ssf-threshold 0.98");
  ASSERT_EQ(r.code, 0) << r.output;
  const Image img = read_image(out);
  EXPECT_EQ(img.width, 48);
  EXPECT_EQ(img.height, 32);
  EXPECT_NE(r.output.find("AutoencoderKL"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("frames 1,"), std::string::npos) << r.output;
}

TEST_F(CliStream, Txt2imgWritesTheRequestedFrames) {
  RunResult r = run_cli("txt2img " + common() + "--taesd " + taesd() + " --output " +
                        quote(path("t2i/out.png")) + " --width 64 --height 32 --frames 2");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* name : {"out_000.png", "out_001.png"}) {
    const Image img = read_image((root_ / "t2i" / name).string());
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(img.height, 32);
  }
  r = run_cli("txt2img " + common() + "--output " + quote(path("one.png")) +
              " --width 32 --height 32 --cfg none");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_image(path("one.png")).width, 32);
  // One-step sd-turbo txt2img: one t-index, no guidance; with two t-indices it is refused.
  r = run_cli("txt2img " + common() + "--output " + quote(path("turbo.png")) +
              " --width 32 --height 32 --cfg none --t-index 0 --turbo");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_image(path("turbo.png")).height, 32);
  r = run_cli("txt2img " + common() + "--output " + quote(path("turbo2.png")) +
              " --width 32 --height 32 --cfg none --turbo");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--turbo (one-step sd-turbo txt2img) needs one --t-index"),
            std::string::npos)
      << r.output;
}

TEST_F(CliStream, BadSettingsFailWithAMessage) {
  const std::string io = "--taesd " + taesd() + " --input " + quote(path("in/a.png")) +
                         " --output " + quote(path("bad.png")) + " ";
  struct Case {
    std::string args, message;
  };
  for (const Case& c : {
           Case{"--width 60 --height 64", "--width 60 must be a multiple of 32"},
           Case{"--width 64 --height 64 --steps 40", "--t-index 45"},
           Case{"--width 64 --height 64 --cfg half", "half"},
           Case{"--width 64 --height 64 --ssf-threshold 1.5", "--ssf-threshold"},
       }) {
    const RunResult r = run_cli("img2img " + common() + io + c.args);
    EXPECT_NE(r.code, 0) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(path("bad.png")));
  RunResult r = run_cli("img2img --model " + quote(path("nowhere")) +
                        " --prompt x --input a.png --output b.png");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;
  r = run_cli("txt2img " + common() + "--output " + quote(path("x.png")) + " --frames 0");
  EXPECT_EQ(r.code, 1) << r.output;
}

}  // namespace
}  // namespace sd
