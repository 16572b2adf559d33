// Interrupts and batches lose nothing (issue 15, item 3), on the tiny model folder of the CLI
// stream tests with TAESD: Ctrl-C (SIGINT sent by the test) in the middle of a video gives a
// playable file with the finished frames, the statistics and a line; an unreadable image in a
// folder is reported and skipped, and the exit code says so; a reader that closes our stdout
// ends the run without killing it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_stream_model.h"
#include "io/image.h"
#include "io/video.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::RunResult;

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);

using test::moving_pattern;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CliInterrupt : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_interrupt");
    VideoWriter w(path("long.mp4"), 64, 48, {12, 1});  // 10 s when played live
    for (int k = 0; k < 120; ++k) w.write(moving_pattern(k, 64, 48));
    w.close();
    VideoWriter s(path("clip.mp4"), 64, 48, {12, 1});
    for (int k = 0; k < 24; ++k) s.write(moving_pattern(k, 64, 48));
    s.close();
    fs::create_directories(root_ / "frames");
    for (const char* name : {"a.png", "c.png"})
      write_image(path(std::string("frames/") + name), moving_pattern(name[0], 64, 64));
    std::ofstream(path("frames/b.png")) << "\x89PNG but not really";
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::vector<std::string> common() {
    return {"--model",  path("model"), "--taesd",  (kFixtures / "taesd" / "tiny").string(),
            "--prompt", "a cat",       "--dtype",  "f32",
            "--width",  "64",          "--height", "64"};
  }
  static std::string common_str() {
    std::string s;
    for (const std::string& a : common()) s += quote(a) + " ";
    return s;
  }

  static fs::path root_;
};

fs::path CliInterrupt::root_;

TEST_F(CliInterrupt, CtrlCMidVideoFinishesTheFileWithTheFramesDone) {
  const std::string out = path("interrupted.mp4"), log = path("interrupt.log");
  std::vector<std::string> args{"vid2vid", path("long.mp4"), out,
                                "--live",  "--stats-json",   path("interrupted.json")};
  for (const std::string& a : common()) args.push_back(a);
  const pid_t pid = test::spawn_cli(args, log);
  ASSERT_GT(pid, 0);
  // Once the first output was written (its progress line), Ctrl-C.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_file(log).find("frame 1/") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  const int code = test::wait_exit(pid);
  const std::string output = read_file(log);
  ASSERT_EQ(code, 130) << output;
  EXPECT_NE(output.find("stopping: finishing the frames in progress"), std::string::npos) << output;
  const size_t at = output.find("interrupted after ");
  ASSERT_NE(at, std::string::npos) << output;
  const long long written = std::stoll(output.substr(at + 18));
  EXPECT_GE(written, 1) << output;
  EXPECT_LT(written, 120) << output;
  EXPECT_NE(output.find("; wrote " + out + " (libx264, " + std::to_string(written) +
                        " frames at 12 fps)"),
            std::string::npos)
      << output;
  EXPECT_FALSE(fs::exists(out + ".partial"));
  // A playable file with exactly the frames written.
  VideoReader reader(out);
  Image frame;
  int frames = 0;
  while (reader.read(frame)) ++frames;
  EXPECT_EQ(frames, written);
  std::ifstream in(path("interrupted.json"));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["ended"], "interrupted");
  EXPECT_EQ(j["frames_written"], written);
}

TEST_F(CliInterrupt, AnUnreadableImageIsSkippedAndCounted) {
  const RunResult r = run_cli("img2img " + common_str() + "--input " + quote(path("frames")) +
                              " --output " + quote(path("frames_out")));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("skipped " + path("frames/b.png") + ": "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("1 input images could not be read and were skipped"), std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(path("frames_out/a.png")));
  EXPECT_TRUE(fs::exists(path("frames_out/c.png")));
  EXPECT_FALSE(fs::exists(path("frames_out/b.png")));
  EXPECT_NE(r.output.find("frames 2, skipped 0, dropped 0"), std::string::npos) << r.output;
}

TEST_F(CliInterrupt, AReaderClosingStdoutEndsTheRunQuietly) {
  // Raw frames of 64x64x3 bytes; head takes 1000 bytes and exits, so later writes get EPIPE.
  const RunResult r = test::run_shell(test::cli() + " vid2vid " + quote(path("clip.mp4")) +
                                      " - --output-format rawvideo " + common_str() +
                                      " | head -c 1000 > /dev/null; echo \"rc=${PIPESTATUS[0]}\"");
  EXPECT_NE(r.output.find("rc=0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stdout was closed by its reader after"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace sd
