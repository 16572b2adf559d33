// `streamdiff bench` run as a user would, on the tiny diffusers-layout model of the CLI stream
// tests (cli_stream_model.h: tiny SD 1.x-like UNet, tokenizer, text encoder, tiny
// AutoencoderKL), assembled in a temp dir, with the tiny TAESD: every table's header and rows
// must appear; without vae/ the full-VAE row is n/a.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "cli_stream_model.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);

class CliBench : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_bench");
    test::write_tiny_stream_model(root_ / "no_vae");
    fs::remove_all(root_ / "no_vae" / "vae");
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string bench(const std::string& model, const std::string& extra) {
    return "bench --model " + quote((root_ / model).string()) + " --taesd " +
           quote((kFixtures / "taesd" / "tiny").string()) +
           " --width 64 --height 64 --frames 2 --max-steps 2 --dtype f32 --threads 1 " + extra;
  }

  static fs::path root_;
};

fs::path CliBench::root_;

// The line of table row `label`, or "" when it is absent.
std::string row_of(const std::string& out, const std::string& label) {
  const size_t at = out.find("\n" + label + " ");
  if (at == std::string::npos) return "";
  const size_t end = out.find('\n', at + 1);
  return out.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
}

TEST_F(CliBench, PrintsEveryTableWithItsRows) {
  const RunResult r = run_cli(bench("model", ""));
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* s :
       {"machine: ", "dtype f32", "warm-up (kernels and weights prepared, untimed): ",
        "first row: ", "estimated total for 17 rows x 1 round: about ",
        "ratios of median frame times:", "n=2 sequential", "(a) Stream Batch vs sequential",
        "(b) residual CFG", "(c) ablation", "fps", "median ms", "unet ms", "decode ms",
        "pre+enc ms"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  for (const std::string label :
       {"n=1 stream batch", "n=1 sequential", "n=2 stream batch", "n=2 sequential", "n=1 cfg none",
        "n=1 cfg self", "n=1 cfg initialize", "n=1 cfg full", "n=2 cfg none", "n=2 cfg self",
        "n=2 cfg initialize", "n=2 cfg full", "full pipeline", "without TAESD (AutoencoderKL)",
        "without K/V precompute", "without batching (sequential)", "without IO threads"}) {
    const std::string row = row_of(r.output, label);
    ASSERT_FALSE(row.empty()) << label << "\n" << r.output;
    // The first column after the label is fps: a positive number, not n/a.
    double fps = 0;
    EXPECT_EQ(std::sscanf(row.c_str() + label.size(), "%lf", &fps), 1) << row;
    EXPECT_GT(fps, 0) << row;
  }
  EXPECT_TRUE(row_of(r.output, "n=3 stream batch").empty()) << "--max-steps 2 ignored";
}

// --repeats: rows run in interleaved rounds; the table gains a spread column and every ratio
// line its per-round range.
TEST_F(CliBench, RepeatsPoolRoundsAndPrintRatioRanges) {
  RunResult r = run_cli(bench("model", "--tables cfg --repeats 3"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("estimated total for 8 rows x 3 rounds"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("spread %"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ratios of median frame times (per-round range):"), std::string::npos)
      << r.output;
  for (const char* num : {"n=1 cfg full", "n=1 cfg none"}) {
    const size_t at = r.output.find(std::string("  ") + num);
    ASSERT_NE(at, std::string::npos) << num << "\n" << r.output;
    const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
    double ratio = 0, lo = 0, hi = 0;
    const size_t slash = line.find("n=1 cfg self");
    ASSERT_NE(slash, std::string::npos) << line;
    ASSERT_EQ(std::sscanf(line.c_str() + slash + 12, "%lf (%lf-%lf)", &ratio, &lo, &hi), 3) << line;
    EXPECT_GT(ratio, 0) << line;
    EXPECT_LE(lo, hi) << line;
  }
  r = run_cli(bench("model", "--repeats 0"));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--repeats"), std::string::npos) << r.output;
}

TEST_F(CliBench, SelectedTableOnlyAndFullVaeRowNotAvailableWithoutVae) {
  const RunResult r = run_cli(bench("no_vae", "--tables ablation"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("(a) Stream Batch"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("(b) residual CFG"), std::string::npos) << r.output;
  const std::string row = row_of(r.output, "without TAESD (AutoencoderKL)");
  EXPECT_NE(row.find("n/a"), std::string::npos) << r.output;
  EXPECT_FALSE(row_of(r.output, "without IO threads").empty()) << r.output;
}

TEST_F(CliBench, BadOptionsFail) {
  RunResult r = run_cli(bench("model", "--tables speed"));
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("speed"), std::string::npos) << r.output;
  r = run_cli("bench --model " + quote((root_ / "model").string()) + " --max-steps 0");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--max-steps"), std::string::npos) << r.output;
  r = run_cli("bench --model " + quote((root_ / "nowhere").string()));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;
  r = run_cli("bench --arch sd3");
  EXPECT_NE(r.code, 0) << r.output;
}

}  // namespace
}  // namespace sd
