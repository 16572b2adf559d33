// What a newcomer meets first (issue 15, items 1, 2 and 6), on the tiny model folder of the CLI
// stream tests (cli_stream_model.h): mistakes are refused before the model is loaded, with a
// message that names the flag and the value; presets and the settings line; warnings; seeds as
// 64-bit numbers; parse errors with a hint.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

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

// Each of these runs must stop before loading: the loading line never appears.
constexpr const char* kLoading = "loading ";

class CliChecks : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_checks");
    fs::create_directory_symlink(root_ / "model", root_ / "my-sd-turbo");
    fs::create_directories(root_ / "in");
    fs::copy(kFixtures / "stream" / "frames" / "frame_00.png", root_ / "in" / "a.png");
    std::ofstream(root_ / "file.txt") << "a file, not a folder";
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::string taesd() { return quote((kFixtures / "taesd" / "tiny").string()); }
  // img2img of `input` at `size` with the TAESD `vae` (size multiple 32), plus `extra`.
  static RunResult img2img(const std::string& extra, const std::string& model = "model",
                           const std::string& size = "--width 64 --height 64",
                           const std::string& vae = taesd(),
                           const std::string& input = path("in/a.png")) {
    return run_cli("img2img --model " + quote(path(model)) + " --taesd " + vae +
                   " --prompt 'a cat' --dtype f32 " + size + " --input " + quote(input) + " " +
                   extra);
  }

  static fs::path root_;
};

fs::path CliChecks::root_;

// Expects a failure with exit code 1, `message` in the output and no loading.
void expect_refused(const RunResult& r, const std::string& message, const std::string& what) {
  EXPECT_EQ(r.code, 1) << what << "\n" << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << what << "\n" << r.output;
  EXPECT_EQ(r.output.find(kLoading), std::string::npos) << what << ": loaded first\n" << r.output;
}

TEST_F(CliChecks, PathsAreCheckedBeforeLoading) {
  const std::string out = " --output " + quote(path("out.png"));
  expect_refused(run_cli("img2img --model " + quote(path("model")) + " --taesd " + taesd() +
                         " --prompt x --input " + quote(path("nowhere.png")) + out),
                 "--input '" + path("nowhere.png") + "' does not exist", "missing input");
  expect_refused(img2img(out + " --lora " + quote(path("none.safetensors"))),
                 "--lora '" + path("none.safetensors") + "': the file", "missing LoRA");
  expect_refused(img2img(out + " --lora f:abc"), "'abc' is not a scale", "--lora f:abc");
  expect_refused(img2img(out + " --lora " + quote(path("file.txt"))), "is not a .safetensors file",
                 "LoRA of another kind");
  expect_refused(
      img2img(" --output " + quote(path("file.txt/out.png"))),
      "--output '" + path("file.txt/out.png") + "': '" + path("file.txt") + "' is not a folder",
      "output under a file");
  expect_refused(img2img(out + " --stats-json " + quote(path("file.txt/s.json"))), "--stats-json",
                 "stats under a file");
  expect_refused(img2img(" --output " + quote(path("in/a.png"))), "is the input itself",
                 "input == output");
  expect_refused(img2img(" --output " + quote(path("in")), "model", "--width 64 --height 64",
                         taesd(), path("in")),
                 "is the input itself", "folder into itself");
  expect_refused(run_cli("img2img --model " + quote(path("nowhere")) +
                         " --prompt x --input a.png --output b.png"),
                 "--model '" + path("nowhere") + "' does not exist", "missing model");
  // A repository id in no cache (an empty one): the pull command to run, nothing downloaded.
  expect_refused(test::run_shell("HF_HUB_CACHE=" + quote(path("empty-cache")) + " " + test::cli() +
                                 " img2img --model stabilityai/sd-turbo --prompt x --input a.png "
                                 "--output b.png"),
                 "fetch it with: streamdiff pull stabilityai/sd-turbo", "repo id");
  expect_refused(img2img(out, "in/a.png"), "--model '" + path("in/a.png") + "'",
                 "an image as the model");
  expect_refused(img2img(out, "model", "--width 64 --height 64", quote(path("nowhere"))),
                 "--taesd '" + path("nowhere") + "' does not exist", "missing TAESD");
  // A FIFO is a stream input, read with FFmpeg, not "does not exist".
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  std::thread writer([&] {  // waits (up to 20 s) for the reader to open the FIFO, then writes
    for (int tries = 0; tries < 2000; ++tries) {
      const int fd = ::open(path("fifo").c_str(), O_WRONLY | O_NONBLOCK);
      if (fd < 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      const char text[] = "not a video";
      EXPECT_EQ(::write(fd, text, sizeof text - 1), ssize_t(sizeof text - 1));
      ::close(fd);
      return;
    }
  });
  const RunResult r = run_cli("img2img --model " + quote(path("model")) + " --taesd " + taesd() +
                              " --prompt x --width 64 --height 64 --input " + quote(path("fifo")) +
                              " --output " + quote(path("fifo_out")));
  writer.join();
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--input: cannot open video '" + path("fifo") + "'"), std::string::npos)
      << r.output;
}

TEST_F(CliChecks, SizesAreCheckedAgainstTheModelsConfig) {
  // The tiny model: TAESD downscale 8 x UNet 2^(3 - 1) = 32; with its own VAE 4 x 4 = 16.
  RunResult r = img2img("--output " + quote(path("o.png")), "model", "--width 48 --height 64");
  expect_refused(r, "--width 48 must be a multiple of 32 for this model", "width 48");
  EXPECT_NE(r.output.find("32 or 64"), std::string::npos) << r.output;
  expect_refused(img2img("--output " + quote(path("o.png")), "model", "--width 64 --height 100000"),
                 "--height 100000 must be in [1, 4096]", "huge height");
  expect_refused(img2img("--output " + quote(path("o.png")) + " --clip-skip 2"),
                 "--clip-skip 2 must be below the text encoder's 2 layers", "clip skip");
}

TEST_F(CliChecks, SettingsAreRefusedByName) {
  const std::string out = " --output " + quote(path("o.png"));
  expect_refused(img2img(out + " --t-index 45,32"), "--t-index [45, 32] must be strictly ascending",
                 "descending");
  expect_refused(img2img(out + " --t-index 32,32"), "must be strictly ascending", "duplicate");
  expect_refused(img2img(out + " --guidance -1"), "--guidance -1 must be a finite number >= 0",
                 "negative guidance");
  expect_refused(img2img(out + " --seed -1"), "--seed '-1' is not a seed", "negative seed");
  expect_refused(img2img(out + " --seed 18446744073709551616"), "(too large)", "seed 2^64");
  expect_refused(img2img(out + " --steps 60"), "--steps 60 must be in [1, 50]", "steps");
  expect_refused(
      run_cli("txt2img --model " + quote(path("model")) + " --taesd " + taesd() +
              " --prompt x --width 64 --height 64 --turbo --output " + quote(path("t.png"))),
      "--turbo (one-step sd-turbo txt2img) needs one --t-index (got [32, 45])", "turbo");
}

TEST_F(CliChecks, PresetsAndTheSettingsLine) {
  // auto, a model whose name has no "turbo": the LCM defaults, and how they were chosen.
  RunResult r = img2img("--output " + quote(path("p1.png")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("settings: preset sd15-lcm (auto: the model's name 'model' does not "
                          "contain 'turbo'), t_index [32, 45] of 50 steps, cfg self, guidance 1.2"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("dtype f32 (--dtype)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("] loading the UNet"), std::string::npos) << r.output;  // progress
  EXPECT_NE(r.output.find("prepared in"), std::string::npos) << r.output;
  // A model named like sd-turbo gets sd-turbo's settings; an explicit flag overrides one.
  r = img2img("--output " + quote(path("p2.png")) + " --t-index 40", "my-sd-turbo");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("preset sd-turbo (auto: the model's name 'my-sd-turbo' contains "
                          "'turbo'), t_index [40] of 50 steps, cfg none"),
            std::string::npos)
      << r.output;
  r = run_cli("txt2img --model " + quote(path("model")) + " --taesd " + taesd() +
              " --prompt x --dtype auto --width 64 --height 64 --preset sd-turbo --output " +
              quote(path("t.png")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("preset sd-turbo, t_index [0] of 50 steps, cfg none"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("one-step turbo"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(auto: this CPU has"), std::string::npos) << r.output;
}

TEST_F(CliChecks, WarningsForSettingsThatDoNothingOrHurt) {
  RunResult r = img2img("--output " + quote(path("w.png")) + " --negative blurry --cfg self");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: --negative has no effect with --cfg self"), std::string::npos)
      << r.output;
  const unsigned cores = std::thread::hardware_concurrency();
  r = img2img("--output " + quote(path("w.png")) + " --threads " + std::to_string(cores + 1));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("warning: --threads " + std::to_string(cores + 1) + " is more than"),
            std::string::npos)
      << r.output;
}

TEST_F(CliChecks, SeedsAreSixtyFourBit) {
  auto image = [&](const std::string& seed) {
    const std::string out = path("seed_" + seed + ".png");
    const RunResult r = img2img("--seed " + seed + " --output " + quote(out));
    EXPECT_EQ(r.code, 0) << r.output;
    return read_image(out).rgb;
  };
  EXPECT_NE(image("0"), image("5"));           // the seed shows in this model's output
  EXPECT_NE(image("0"), image("4294967296"));  // 2^32 used to wrap around to 0
  EXPECT_NE(image("4294967295"), image("18446744073709551615"));
}

TEST_F(CliChecks, ParseErrorsHintAtDoubleDash) {
  RunResult r = run_cli("tokenize '-a cat'");
  EXPECT_EQ(r.code, 106) << r.output;  // CLI11's RequiredError
  EXPECT_NE(r.output.find("error: text is required"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("put it after '--'"), std::string::npos) << r.output;
  r = run_cli("tokenize -- '-a cat'");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_cli("img2img --width abc");
  EXPECT_EQ(r.code, 104) << r.output;  // ConversionError
  EXPECT_NE(r.output.find("--width"), std::string::npos) << r.output;
}

TEST_F(CliChecks, FfmpegPrintsNothingOfItsOwn) {
  std::ofstream(path("fake.mp4")) << "not a video at all";
  const RunResult r =
      run_cli("vid2vid " + quote(path("fake.mp4")) + " " + quote(path("x.mp4")) + " --model " +
              quote(path("model")) + " --taesd " + taesd() + " --prompt x --width 64 --height 64");
  EXPECT_EQ(r.code, 1) << r.output;
  // One line, ours, naming the flag, the file and FFmpeg's reason; no "[mov,mp4,...] ..." lines.
  EXPECT_EQ(r.output.find("[mov"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("error: --input: cannot open video '" + path("fake.mp4") + "'"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace sd
