// VideoReader / VideoWriter (src/io/video.h): round trips through every container/encoder the
// writer picks, exact frame rates, damaged and fake inputs, odd sizes, and the
// "<name>.partial" + rename contract.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/video.h"
#include "test_support.h"

namespace sd {
namespace {

namespace fs = std::filesystem;
using test::error_of;

constexpr int kW = 64, kH = 48, kFrames = 8;

// Frame k of a smooth gradient that moves right by 6 levels a frame.
Image gradient(int k, int w = kW, int h = kH) {
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * w + x) * 3];
      p[0] = uint8_t(std::min(255, 20 + x * 3 + k * 6));
      p[1] = uint8_t(std::min(255, 30 + y * 4));
      p[2] = uint8_t(std::max(0, 220 - x - y - k * 4));
    }
  return img;
}

double mean_abs_error(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) sum += std::abs(int(a.rgb[i]) - int(b.rgb[i]));
  return sum / double(a.rgb.size());
}

class VideoFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        fs::temp_directory_path() / ("sd_video_" + std::to_string(::getpid()) + "_" +
                                     testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  // A y4m file of one grey 4:2:0 frame of width x height (any size its header claims).
  std::string y4m(const std::string& name, int width, int height) const {
    const std::string path = file(name);
    std::ofstream(path, std::ios::binary)
        << "YUV4MPEG2 W" << width << " H" << height << " F12:1 C420jpeg\nFRAME\n"
        << std::string(size_t(width) * size_t(height) * 3 / 2, '\x80');
    return path;
  }

  // Writes the kFrames-frame gradient clip; returns the encoder used.
  std::string write_clip(const std::string& path, Rational fps = {12, 1}) const {
    VideoWriter w(path, kW, kH, fps);
    for (int k = 0; k < kFrames; ++k) w.write(gradient(k));
    w.close();
    return w.codec_name();
  }

  fs::path dir_;
};

TEST_F(VideoFiles, RoundTripKeepsCountSizeRateAndPixels) {
  for (const char* name : {"clip.mp4", "clip.mkv", "clip.mov", "clip.avi", "clip.webm"}) {
    SCOPED_TRACE(name);
    const std::string path = file(name);
    const std::string codec = write_clip(path);
    EXPECT_EQ(codec, video_encoder_for(path));
    ASSERT_TRUE(fs::exists(path));
    EXPECT_FALSE(fs::exists(path + ".partial"));
    VideoReader r(path);
    EXPECT_EQ(r.width(), kW);
    EXPECT_EQ(r.height(), kH);
    EXPECT_EQ(r.fps().num, 12);
    EXPECT_EQ(r.fps().den, 1);
    if (r.frame_count() >= 0) {
      EXPECT_EQ(r.frame_count(), kFrames);
    }
    EXPECT_GE(r.estimated_frame_count(), kFrames - 1);
    Image img;
    int n = 0;
    double worst = 0;
    while (r.read(img)) {
      ASSERT_EQ(img.width, kW);
      ASSERT_EQ(img.height, kH);
      if (n < kFrames) worst = std::max(worst, mean_abs_error(img, gradient(n)));
      ++n;
    }
    EXPECT_EQ(n, kFrames);
    EXPECT_EQ(r.frames_read(), kFrames);
    EXPECT_FALSE(r.read(img)) << "read after the end";
    // Mean abs error per 8-bit sample of the worst frame, measured with FFmpeg 5.1 (Debian 12):
    // libx264 CRF 18 0.97, mpeg4 q3 1.08, VP9 CRF 30 1.35 (yuv420p conversion alone: ~0.4).
    EXPECT_LT(worst, 2.0) << codec;
  }
}

TEST_F(VideoFiles, FractionalFrameRatesComeBackExactly) {
  for (const char* name : {"ntsc.mp4", "ntsc.mkv", "ntsc.webm"}) {
    SCOPED_TRACE(name);
    write_clip(file(name), {30000, 1001});
    const VideoReader r(file(name));
    EXPECT_EQ(r.fps().num, 30000);
    EXPECT_EQ(r.fps().den, 1001);
  }
  write_clip(file("pal.mkv"), {25, 1});
  EXPECT_EQ(VideoReader(file("pal.mkv")).fps().num, 25);
}

TEST_F(VideoFiles, ExplicitFrameTimesKeepGapsForDroppedFrames) {
  {
    VideoWriter w(file("gaps.mkv"), kW, kH, {10, 1});
    w.write(gradient(0), 0);
    w.write(gradient(3), 3);
    w.write(gradient(4), 4);
    EXPECT_NE(error_of([&] { w.write(gradient(4), 4); }).find("does not follow"),
              std::string::npos);
    w.close();
    EXPECT_EQ(w.frames_written(), 3);
  }
  VideoReader r(file("gaps.mkv"));
  Image img;
  int n = 0;
  while (r.read(img)) ++n;
  EXPECT_EQ(n, 3);
}

TEST_F(VideoFiles, TruncatedFileGivesFewerFramesOrAnErrorNamingIt) {
  for (const char* name : {"cut.mp4", "cut.mkv", "cut.webm", "cut.avi"}) {
    SCOPED_TRACE(name);
    const std::string full = file(std::string("full_") + name);
    write_clip(full);
    const std::string cut = file(name);
    fs::copy_file(full, cut);
    fs::resize_file(cut, fs::file_size(full) / 2);
    int n = 0;
    const std::string err = error_of([&] {
      VideoReader r(cut);
      Image img;
      while (r.read(img)) ++n;
    });
    if (err.find("no sd::Error") != std::string::npos)
      EXPECT_LT(n, kFrames);
    else
      EXPECT_NE(err.find(cut), std::string::npos) << err;
  }
}

TEST_F(VideoFiles, MissingAndNonVideoFilesAreErrorsNamingThem) {
  const std::string fake = file("notes.mp4");
  std::ofstream(fake) << "this is a text file, not a video\n";
  std::string err = error_of([&] { VideoReader r(fake); });
  EXPECT_NE(err.find(fake), std::string::npos) << err;
  err = error_of([&] { VideoReader r(file("nowhere.mkv")); });
  EXPECT_NE(err.find("nowhere.mkv"), std::string::npos) << err;
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
}

TEST_F(VideoFiles, FramesLargerThan8192ASideAreRefusedBeforeDecoding) {
  // A y4m header claiming 9000x2 (one frame of 4:2:0 data follows): an error, not a 9000-wide
  // allocation per frame (a few header bytes can claim any size).
  const std::string wide = y4m("wide.y4m", 9000, 2);
  const std::string err = error_of([&] { VideoReader r(wide); });
  EXPECT_NE(err.find("wide.y4m"), std::string::npos) << err;
  EXPECT_NE(err.find("frames of 9000x2 exceed 8192 pixels a side"), std::string::npos) << err;
}

TEST_F(VideoFiles, MaxSideLowersTheLimit) {
  const std::string clip = y4m("limit.y4m", 64, 48);
  VideoInputOptions options;
  options.max_side = 64;
  Image frame;
  EXPECT_TRUE(VideoReader(clip, options).read(frame));
  options.max_side = 63;
  std::string err = error_of([&] { VideoReader r(clip, options); });
  EXPECT_NE(err.find("frames of 64x48 exceed 63 pixels a side"), std::string::npos) << err;
  options.max_side = 0;
  err = error_of([&] { VideoReader r(clip, options); });
  EXPECT_NE(err.find("max_side 0 is outside 1 to 8192"), std::string::npos) << err;
}

TEST_F(VideoFiles, OddSizesAndBadArgumentsAreRefused) {
  const std::string odd = file("odd.mp4");
  std::string err = error_of([&] { VideoWriter w(odd, 63, 48, {12, 1}); });
  EXPECT_NE(err.find("odd.mp4"), std::string::npos) << err;
  EXPECT_NE(err.find("63x48"), std::string::npos) << err;
  EXPECT_NE(err.find("even"), std::string::npos) << err;
  EXPECT_NE(error_of([&] { VideoWriter w(odd, 64, 47, {12, 1}); }).find("even"), std::string::npos);
  EXPECT_FALSE(fs::exists(odd));
  EXPECT_FALSE(fs::exists(odd + ".partial"));
  err = error_of([&] { VideoWriter w(file("clip.png"), 64, 48, {12, 1}); });
  EXPECT_NE(err.find("clip.png"), std::string::npos) << err;
  EXPECT_NE(error_of([&] {
              VideoWriter w(file("r.mp4"), 64, 48, {0, 1});
            }).find("frame rate"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              VideoWriter w(file("no/such/dir/x.mp4"), 64, 48, {12, 1});
            }).find("x.mp4.partial"),
            std::string::npos);
  VideoWriter w(file("size.mp4"), kW, kH, {12, 1});
  err = error_of([&] { w.write(gradient(0, 32, 32)); });
  EXPECT_NE(err.find("32x32"), std::string::npos) << err;
  w.discard();
}

TEST_F(VideoFiles, PartialNameUntilCloseThenRenamed) {
  const std::string out = file("out.mp4");
  std::ofstream(out) << "previous contents";
  {
    VideoWriter w(out, kW, kH, {12, 1});
    for (int k = 0; k < 3; ++k) w.write(gradient(k));
    EXPECT_TRUE(fs::exists(out + ".partial"));
    EXPECT_EQ(fs::file_size(out), 17u) << "the old file is replaced only by close()";
    w.close();
    EXPECT_FALSE(fs::exists(out + ".partial"));
    w.close();  // idempotent
  }
  EXPECT_EQ(VideoReader(out).frame_count(), 3);
  // The destructor closes an unclosed writer.
  {
    VideoWriter w(file("dtor.mkv"), kW, kH, {12, 1});
    w.write(gradient(0));
  }
  EXPECT_TRUE(fs::exists(file("dtor.mkv")));
  EXPECT_FALSE(fs::exists(file("dtor.mkv.partial")));
  // discard() and an exception unwinding past the writer leave nothing behind.
  {
    VideoWriter w(file("gone.mp4"), kW, kH, {12, 1});
    w.write(gradient(0));
    w.discard();
    w.close();  // does nothing after discard
  }
  EXPECT_FALSE(fs::exists(file("gone.mp4")));
  EXPECT_FALSE(fs::exists(file("gone.mp4.partial")));
  try {
    VideoWriter w(file("failed.mp4"), kW, kH, {12, 1});
    w.write(gradient(0));
    throw std::runtime_error("the run failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(fs::exists(file("failed.mp4")));
  EXPECT_FALSE(fs::exists(file("failed.mp4.partial")));
}

TEST(VideoPaths, ExtensionsAndEncoders) {
  for (const char* p : {"a.mp4", "b.MKV", "dir/c.mov", "d.avi", "e.webm", "f.gif"})
    EXPECT_TRUE(is_video_path(p)) << p;
  for (const char* p : {"a.png", "b.jpg", "folder", "c.mp4.partial", "mp4"})
    EXPECT_FALSE(is_video_path(p)) << p;
  EXPECT_EQ(video_encoder_for("x.avi"), "mpeg4");
  const std::string h264 = video_encoder_for("x.mp4");
  EXPECT_TRUE(h264 == "libx264" || h264 == "mpeg4") << h264;
  const std::string webm = video_encoder_for("x.webm");
  EXPECT_TRUE(webm == "libvpx-vp9" || webm == "libvpx") << webm;
  EXPECT_NE(error_of([] { video_encoder_for("x.gif"); }).find("x.gif"), std::string::npos);
}

}  // namespace
}  // namespace sd
