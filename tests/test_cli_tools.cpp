// The smaller tools and options (issue 15, item 7): streamdiff_bench's --help and unknown names,
// `bench --model` with a single file, --clip-skip on the pipeline commands, and both latencies
// (with and without the queueing) in the summary and --stats-json.
#include <gtest/gtest.h>
#include <unistd.h>

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

class CliTools : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_tools");
    fs::create_directories(root_ / "in");
    fs::copy(kFixtures / "stream" / "frames" / "frame_00.png", root_ / "in" / "a.png");
    fs::copy(kFixtures / "stream" / "frames" / "frame_01.png", root_ / "in" / "b.png");
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::string common() {
    return "--model " + quote(path("model")) + " --taesd " +
           quote((kFixtures / "taesd" / "tiny").string()) +
           " --prompt 'a cat' --dtype f32 --width 64 --height 64 ";
  }
  static fs::path root_;
};

fs::path CliTools::root_;

#ifdef SD_BENCH_PATH
TEST_F(CliTools, BenchToolListsItsBenchmarks) {
  RunResult r = test::run_shell(quote(SD_BENCH_PATH) + " --help");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("usage: streamdiff_bench [--csv-dir DIR] [NAME ...]"), std::string::npos)
      << r.output;
  for (const char* name : {"kernels", "taesd", "unet-batch", "lora", "load", "soak"})
    EXPECT_NE(r.output.find(std::string(" ") + name), std::string::npos) << name << r.output;
  EXPECT_EQ(r.output.find("machine:"), std::string::npos) << "--help ran benchmarks";
  r = test::run_shell(quote(SD_BENCH_PATH) + " no-such-bench");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("error: no benchmark matches 'no-such-bench'"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("Benchmarks:"), std::string::npos) << r.output;
}
#endif

TEST_F(CliTools, BenchTakesSingleFiles) {
  // A single-file checkpoint is inspected like img2img does (this tiny one is not full-size,
  // so no configs are assumed for it); it is no longer refused as "not a folder".
  const std::string file = (kFixtures / "ldm" / "sd1_tiny.safetensors").string();
  const RunResult r = run_cli("bench --model " + quote(file) + " --width 64 --height 64");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_EQ(r.output.find("is not a folder"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--model '" + file + "': "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("matches neither SD 1.5"), std::string::npos) << r.output;
}

TEST_F(CliTools, ClipSkipChangesThePromptEmbedding) {
  auto run = [&](int clip_skip) {
    const std::string out = path("clip_skip_" + std::to_string(clip_skip) + ".png");
    const RunResult r =
        run_cli("img2img " + common() + "--input " + quote(path("in/a.png")) + " --output " +
                quote(out) + " --clip-skip " + std::to_string(clip_skip));
    EXPECT_EQ(r.code, 0) << r.output;
    return read_image(out).rgb;
  };
  const auto none = run(0), skip1 = run(1);
  EXPECT_NE(none, skip1);
  EXPECT_EQ(none, run(0));  // deterministic: the difference is clip_skip's
}

TEST_F(CliTools, BothLatenciesAreReportedAndLabelled) {
  const RunResult r =
      run_cli("img2img " + common() + "--input " + quote(path("in")) + " --output " +
              quote(path("out")) + " --stats-json " + quote(path("stats.json")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("latency (from reading to writing, includes waiting in the queue): "
                          "mean "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("compute per frame (the model's time, without waiting): mean "),
            std::string::npos)
      << r.output;
  std::ifstream in(path("stats.json"));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(j.is_object());
  const double compute = j["compute_ms"]["mean"], latency = j["latency_ms"]["mean"];
  EXPECT_GT(compute, 0);
  EXPECT_LE(compute, latency + 1e-6);
  EXPECT_NE(j["latency_ms"]["meaning"].get<std::string>().find("waited in the input queue"),
            std::string::npos);
  EXPECT_EQ(j["ended"], "end of input");
}

}  // namespace
}  // namespace sd
