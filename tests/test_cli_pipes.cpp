// Live input and output the Unix way (issue 15, item 4): FFmpeg (the `ffmpeg` tool) on both sides
// of a pipe. In: y4m, MJPEG and raw RGB on stdin. Out: y4m, raw RGB and MJPEG on stdout, decoded
// again by ffmpeg; the messages go to stderr, so stdout carries nothing but video. A camera
// cannot be tested here (no /dev/video*): only the message for a missing one.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli_stream_model.h"
#include "io/image.h"
#include "io/video.h"
#include "test_support.h"

namespace sd {
namespace {

using test::quote;
using test::run_cli;
using test::run_shell;
using test::RunResult;

namespace fs = std::filesystem;

const fs::path kFixtures(SD_FIXTURE_DIR);
constexpr int kFrames = 6;

using test::moving_pattern;

struct Facts {
  int frames = 0, width = 0, height = 0;
  Rational fps;
};

Facts facts_of(const std::string& path) {
  VideoReader r(path);
  Facts f{0, r.width(), r.height(), r.fps()};
  Image img;
  while (r.read(img)) ++f.frames;
  return f;
}

class CliPipes : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_pipes");
    VideoWriter w(path("clip.mp4"), 64, 48, {12, 1});
    for (int k = 0; k < kFrames; ++k) w.write(moving_pattern(k, 64, 48));
    w.close();
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  void SetUp() override {
    if (std::system("command -v ffmpeg > /dev/null 2>&1") != 0)
      GTEST_SKIP() << "the ffmpeg tool is not installed (scripts/install-deps.sh installs it)";
  }

  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::string common() {
    return "--model " + quote(path("model")) + " --taesd " +
           quote((kFixtures / "taesd" / "tiny").string()) +
           " --prompt 'a cat' --dtype f32 --width 64 --height 64 ";
  }
  // ffmpeg decoding clip.mp4 into a stream on stdout, as `format` with `extra` options.
  static std::string ffmpeg_out(const std::string& format, const std::string& extra = "") {
    return "ffmpeg -nostdin -loglevel error -i " + quote(path("clip.mp4")) + " " + extra + " -f " +
           format + " -";
  }

  static fs::path root_;
};

fs::path CliPipes::root_;

TEST_F(CliPipes, Y4mOnStdin) {
  const RunResult r =
      run_shell("set -o pipefail; " + ffmpeg_out("yuv4mpegpipe") + " | " + test::cli() +
                " vid2vid - " + quote(path("from_y4m.mp4")) + " " + common());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("input stdin (rawvideo 64x48, 12 fps, stream)"), std::string::npos)
      << r.output;
  const Facts f = facts_of(path("from_y4m.mp4"));
  EXPECT_EQ(f.frames, kFrames);
  EXPECT_EQ(f.width, 64);
  EXPECT_EQ(f.fps.num, 12);
}

TEST_F(CliPipes, MjpegAndRawVideoOnStdin) {
  RunResult r = run_shell("set -o pipefail; " + ffmpeg_out("mjpeg") + " | " + test::cli() +
                          " img2img --input - --input-format mjpeg --fps 12 --output " +
                          quote(path("from_mjpeg")) + " " + common());
  ASSERT_EQ(r.code, 0) << r.output;
  for (int k = 0; k < kFrames; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%06d.png", k);
    EXPECT_TRUE(fs::exists(root_ / "from_mjpeg" / name)) << name << "\n" << r.output;
  }
  r = run_shell("set -o pipefail; " + ffmpeg_out("rawvideo", "-pix_fmt rgb24") + " | " +
                test::cli() +
                " img2img --input - --input-format rawvideo --input-size 64x48 "
                "--input-pixel-format rgb24 --fps 12 --output " +
                quote(path("from_raw.mkv")) + " " + common());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(facts_of(path("from_raw.mkv")).frames, kFrames);
  // Raw video without its size: FFmpeg's reason, named as the input's.
  r = run_shell(ffmpeg_out("rawvideo", "-pix_fmt rgb24") + " | " + test::cli() +
                " img2img --input - --input-format rawvideo --output " + quote(path("x.mkv")) +
                " " + common());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("error: --input: cannot open video '-'"), std::string::npos) << r.output;
}

TEST_F(CliPipes, StdoutCarriesOnlyVideo) {
  // y4m to ffmpeg, which writes a file we read back.
  RunResult r =
      run_shell("set -o pipefail; " + test::cli() + " vid2vid " + quote(path("clip.mp4")) + " - " +
                common() + " | ffmpeg -nostdin -loglevel error -f yuv4mpegpipe -i - -c:v ffv1 " +
                quote(path("y4m_out.mkv")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("wrote stdout (y4m, 6 frames at 12 fps)"), std::string::npos) << r.output;
  Facts f = facts_of(path("y4m_out.mkv"));
  EXPECT_EQ(f.frames, kFrames);
  EXPECT_EQ(f.width, 64);
  EXPECT_EQ(f.height, 64);
  // Raw RGB: exactly frames x 64 x 64 x 3 bytes (no text got mixed in).
  r = run_shell("set -o pipefail; " + test::cli() + " vid2vid " + quote(path("clip.mp4")) +
                " - --output-format rawvideo " + common() + " | wc -c > " +
                quote(path("raw_bytes.txt")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(std::stol(test::run_shell("cat " + quote(path("raw_bytes.txt"))).output),
            long(kFrames) * 64 * 64 * 3);
  // MJPEG, decoded by ffmpeg.
  r = run_shell("set -o pipefail; " + test::cli() + " vid2vid " + quote(path("clip.mp4")) +
                " - --output-format mjpeg " + common() +
                " | ffmpeg -nostdin -loglevel error -f mjpeg -i - -c:v ffv1 " +
                quote(path("mjpeg_out.mkv")));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(facts_of(path("mjpeg_out.mkv")).frames, kFrames);
}

TEST_F(CliPipes, AMissingCameraIsNamed) {
  const RunResult r =
      run_cli("img2img --input /dev/video97 --output " + quote(path("cam")) + " " + common());
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("--input '/dev/video97' does not exist: no camera there"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace sd
