// The `streamdiff` binary (SD_CLI_PATH), run as a user would: help and version, a TAESD round
// trip on the tiny fixture model, and the exit codes of common mistakes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/image.h"
#include "io/safetensors.h"
#include "streamdiff/version.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

const std::string kTaesd = std::string(SD_FIXTURE_DIR) + "/taesd";

class CliTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_cli_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(CliTest, HelpAndVersion) {
  RunResult r = run_cli("--help");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("taesd"), std::string::npos) << r.output;

  r = run_cli("--version");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(std::string("streamdiff ") + streamdiff::version()), std::string::npos)
      << r.output;

  r = run_cli("taesd --help");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("--latents-in"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--dtype"), std::string::npos) << r.output;

  r = run_cli("");  // a subcommand is required
  EXPECT_NE(r.code, 0) << r.output;
}

TEST_F(CliTest, TaesdRoundTripOnTinyModel) {
  const std::string model = quote(kTaesd + "/tiny");
  RunResult r =
      run_cli("taesd --model " + model + " --input " + quote(kTaesd + "/input_128x192.png") +
              " --width 192 --height 128 --dtype f32 --repeat 2 --output " + quote(path("rt.png")) +
              " --latents-out " + quote(path("z.safetensors")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("encode:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decode:"), std::string::npos) << r.output;

  Image rt = read_image(path("rt.png"));
  EXPECT_EQ(rt.width, 192);
  EXPECT_EQ(rt.height, 128);

  // The input already has the requested size, so the latents are the reference encoding.
  auto z = SafetensorsFile::open(path("z.safetensors"));
  Tensor got = z->load("latents", DType::F32);
  auto ref = SafetensorsFile::open(kTaesd + "/tiny/reference_128x192.safetensors");
  Tensor want = ref->load("encoded", DType::F32, got.shape());
  double num = 0, den = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double d = double(got.data_as<float>()[i]) - want.data_as<float>()[i];
    num += d * d;
    den += double(want.data_as<float>()[i]) * want.data_as<float>()[i];
  }
  EXPECT_LE(std::sqrt(num / den), 1e-4);

  // Decoding the saved latents gives the same image.
  r = run_cli("taesd --model " + model + " --dtype f32 --latents-in " +
              quote(path("z.safetensors")) + " --output " + quote(path("rt2.png")));
  ASSERT_EQ(r.code, 0) << r.output;
  Image rt2 = read_image(path("rt2.png"));
  EXPECT_EQ(rt2.width, rt.width);
  EXPECT_EQ(rt2.height, rt.height);
  EXPECT_EQ(rt2.rgb, rt.rgb);
}

TEST_F(CliTest, TaesdErrors) {
  const std::string base = "taesd --model " + quote(kTaesd + "/tiny") + " --dtype f32 ";
  const std::string input = " --input " + quote(kTaesd + "/input_128x192.png");

  // Not an image.
  RunResult r = run_cli(base + "--input " + quote(kTaesd + "/tiny/config.json") + " --output " +
                        quote(path("x.png")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(path("x.png")));

  // Width not a multiple of 8.
  r = run_cli(base + input + " --width 100 --height 64 --output " + quote(path("x.png")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("multiple of 8"), std::string::npos) << r.output;

  // Unwritable output path (under a file), refused before loading.
  std::ofstream(path("file.txt")) << "a file";
  r = run_cli(base + input + " --width 64 --height 64 --output " + quote(path("file.txt/x.png")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--output '" + path("file.txt/x.png") + "'"), std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("backend:"), std::string::npos) << "loaded first: " << r.output;

  // Missing model.
  r = run_cli("taesd --model " + quote(path("missing")) + input + " --output " +
              quote(path("x.png")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;

  // Nothing to do / missing --model (a CLI11 parse error: non-zero, not 1).
  r = run_cli(base + input);
  EXPECT_EQ(r.code, 1) << r.output;
  r = run_cli("taesd" + input);
  EXPECT_NE(r.code, 0) << r.output;
}

}  // namespace
}  // namespace sd
