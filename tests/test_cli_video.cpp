// Video in and out of `streamdiff img2img` / `vid2vid`, run as a user would, on the tiny model
// folder of the CLI stream tests (cli_stream_model.h) with TAESD, on short synthetic videos
// written with VideoWriter.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

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

using test::moving_pattern;

void write_video(const std::string& path, int frames, Rational fps) {
  VideoWriter w(path, 64, 48, fps);
  for (int k = 0; k < frames; ++k) w.write(moving_pattern(k, 64, 48));
  w.close();
}

struct VideoFacts {
  int frames = 0, width = 0, height = 0;
  Rational fps;
};

VideoFacts read_facts(const std::string& path) {
  VideoReader r(path);
  VideoFacts f{0, r.width(), r.height(), r.fps()};
  Image img;
  while (r.read(img)) ++f.frames;
  return f;
}

// The number after `key` in the summary line ("frames 6, skipped 0, dropped 0, ..."); -1 if absent.
long long summary_value(const std::string& out, const std::string& key) {
  const size_t line = out.rfind("\nframes ");
  if (line == std::string::npos) return -1;
  const size_t at = out.find(key + " ", line + 1);
  if (at == std::string::npos) return -1;
  return std::stoll(out.substr(at + key.size() + 1));
}

class CliVideo : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = test::make_model_workspace("cli_video");
    write_video(path("clip.mp4"), 6, {12, 1});
    fs::create_directories(root_ / "frames");
    for (int k = 0; k < 3; ++k)
      write_image(path("frames/f" + std::to_string(k) + ".png"), moving_pattern(k, 80, 60));
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static std::string path(const std::string& name) { return (root_ / name).string(); }
  static std::string common(const std::string& taesd = test::kTinyTaesd.string()) {
    return "--model " + quote(path("model")) + " --taesd " + quote(taesd) +
           " --prompt 'a cat' --dtype f32 --width 64 --height 64 ";
  }

  static fs::path root_;
};

fs::path CliVideo::root_;

TEST_F(CliVideo, Vid2vidKeepsFrameCountAndRate) {
  const std::string out = path("out/styled.mp4");
  const RunResult r =
      run_cli("vid2vid " + quote(path("clip.mp4")) + " " + quote(out) + " " + common());
  ASSERT_EQ(r.code, 0) << r.output;
  const VideoFacts f = read_facts(out);
  EXPECT_EQ(f.frames, 6);
  EXPECT_EQ(f.width, 64);
  EXPECT_EQ(f.height, 64);
  EXPECT_EQ(f.fps.num, 12);
  EXPECT_EQ(f.fps.den, 1);
  EXPECT_FALSE(fs::exists(out + ".partial"));
  EXPECT_NE(r.output.find("frames 6, skipped 0, dropped 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("frame 6/6"), std::string::npos) << r.output;  // progress line
  EXPECT_NE(r.output.find("p99"), std::string::npos) << r.output;
}

TEST_F(CliVideo, VideoToPngFolderAndFolderToVideo) {
  RunResult r = run_cli("img2img " + common() + "--input " + quote(path("clip.mp4")) +
                        " --output " + quote(path("pngs")));
  ASSERT_EQ(r.code, 0) << r.output;
  for (int k = 0; k < 6; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%06d.png", k);
    ASSERT_TRUE(fs::exists(root_ / "pngs" / name)) << name << "\n" << r.output;
    EXPECT_EQ(read_image((root_ / "pngs" / name).string()).width, 64);
  }
  EXPECT_FALSE(fs::exists(root_ / "pngs" / "frame_000006.png"));

  r = run_cli("img2img " + common() + "--input " + quote(path("frames")) + " --output " +
              quote(path("from_folder.webm")) + " --fps 10");
  ASSERT_EQ(r.code, 0) << r.output;
  const VideoFacts f = read_facts(path("from_folder.webm"));
  EXPECT_EQ(f.frames, 3);
  EXPECT_EQ(f.fps.num, 10);
  EXPECT_EQ(f.fps.den, 1);
}

TEST_F(CliVideo, LiveRunDropsWhatTheDenoiserCannotTake) {
  // 12 frames offered within 24 ms: far faster than the denoiser, so frames must be dropped.
  write_video(path("fast.mkv"), 12, {500, 1});
  const RunResult r = run_cli("vid2vid " + quote(path("fast.mkv")) + " " + quote(path("live.mkv")) +
                              " --live " + common());
  ASSERT_EQ(r.code, 0) << r.output;
  const long long written = summary_value(r.output, "frames");
  const long long dropped = summary_value(r.output, "dropped");
  EXPECT_GE(written, 1) << r.output;
  EXPECT_GT(dropped, 0) << r.output;
  EXPECT_EQ(written + dropped, 12) << r.output;
  EXPECT_EQ(read_facts(path("live.mkv")).frames, written);
}

TEST_F(CliVideo, BadVideoArgumentsFailWithAMessage) {
  std::ofstream(path("fake.mp4")) << "not a video";
  struct Case {
    std::string args, message;
  };
  for (const Case& c : {
           Case{"vid2vid " + quote(path("fake.mp4")) + " " + quote(path("x.mp4")), "fake.mp4"},
           Case{"vid2vid " + quote(path("frames/f0.png")) + " " + quote(path("x.mp4")),
                "not a video file"},
           Case{"vid2vid " + quote(path("clip.mp4")) + " " + quote(path("x.mp4")) + " --fps 5",
                "--fps"},
           Case{"img2img --input " + quote(path("clip.mp4")) + " --output " + quote(path("x.png")),
                "must be a folder, a video file or - (stdout)"},
           Case{"vid2vid " + quote(path("clip.mp4")) + " " + quote(path("x.gif")), "x.gif"},
       }) {
    const RunResult r = run_cli(c.args + " " + common());
    EXPECT_EQ(r.code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
  }
  // A failure after the output was opened (here: loading the TAESD) leaves no file behind.
  const RunResult r = run_cli("vid2vid " + quote(path("clip.mp4")) + " " + quote(path("x.mp4")) +
                              " " + common(path("nowhere")));
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_FALSE(fs::exists(path("x.mp4")));
  EXPECT_FALSE(fs::exists(path("x.mp4.partial")));
}

}  // namespace
}  // namespace sd
