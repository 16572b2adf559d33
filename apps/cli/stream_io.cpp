// Frame sources, sinks and the progress line of `streamdiff img2img` / `vid2vid`.
#include "stream_io.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <utility>
#include <vector>

#include "commands.h"

namespace streamdiff::cli {

namespace fs = std::filesystem;

namespace {

std::string rate_str(Rational r) {
  return r.den == 1 ? std::to_string(r.num) : std::to_string(r.num) + "/" + std::to_string(r.den);
}

class ImageFilesSource : public FrameSource {
 public:
  ImageFilesSource(std::vector<fs::path> files, Rational fps, bool single, std::string what)
      : files_(std::move(files)), fps_(fps), single_(single), what_(std::move(what)) {}
  bool next(InputFrame& f) override {
    if (f.index >= int64_t(files_.size())) return false;
    f.name = files_[size_t(f.index)].filename().string();
    f.image = read_image(files_[size_t(f.index)].string());
    return true;
  }
  int64_t count() const override { return int64_t(files_.size()); }
  Rational fps() const override { return fps_; }
  bool is_single_image() const override { return single_; }
  std::string describe() const override { return what_; }

 private:
  std::vector<fs::path> files_;
  Rational fps_;
  bool single_;
  std::string what_;
};

class VideoSource : public FrameSource {
 public:
  explicit VideoSource(const std::string& path) : path_(path), reader_(path) {
    check(reader_.fps().valid(), "video '", path,
          "' states no frame rate; convert it to a container that does (e.g. .mp4)");
  }
  bool next(InputFrame& f) override {
    if (!reader_.read(f.image)) return false;
    char name[32];
    std::snprintf(name, sizeof name, "frame_%06lld.png", static_cast<long long>(f.index));
    f.name = name;
    return true;
  }
  int64_t count() const override { return reader_.frame_count(); }
  int64_t estimated_count() const override { return reader_.estimated_frame_count(); }
  Rational fps() const override { return reader_.fps(); }
  bool is_video() const override { return true; }
  std::string describe() const override {
    return path_ + " (" + reader_.codec_name() + " " + std::to_string(reader_.width()) + "x" +
           std::to_string(reader_.height()) + ", " + rate_str(reader_.fps()) + " fps)";
  }

 private:
  std::string path_;
  VideoReader reader_;
};

class VideoSink : public FrameSink {
 public:
  VideoSink(const std::string& path, int width, int height, Rational fps, bool timestamps)
      : path_(path), writer_(path, width, height, fps), fps_(fps), timestamps_(timestamps) {}
  void write(int64_t index, const std::string&, const Image& img) override {
    if (timestamps_)
      writer_.write(img, index);
    else
      writer_.write(img);
  }
  void close() override { writer_.close(); }
  std::string describe() const override {
    return path_ + " (" + writer_.codec_name() + ", " + std::to_string(writer_.frames_written()) +
           " frames at " + rate_str(fps_) + " fps)";
  }

 private:
  std::string path_;
  VideoWriter writer_;
  Rational fps_;
  bool timestamps_;
};

// One image file (path given) or a folder (each frame under its source name).
class ImageSink : public FrameSink {
 public:
  ImageSink(fs::path target, bool folder) : target_(std::move(target)), folder_(folder) {}
  void write(int64_t, const std::string& name, const Image& img) override {
    write_image((folder_ ? target_ / name : target_).string(), img);
    ++written_;
  }
  std::string describe() const override {
    return target_.string() + (folder_ ? " (" + std::to_string(written_) + " images)" : "");
  }

 private:
  fs::path target_;
  bool folder_;
  int64_t written_ = 0;
};

}  // namespace

std::unique_ptr<FrameSource> open_source(const std::string& input, Rational image_fps) {
  if (is_video_path(input) && !fs::is_directory(input)) return std::make_unique<VideoSource>(input);
  if (fs::is_directory(input)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(input))
      if (e.is_regular_file() && is_image_path(e.path())) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    check(!files.empty(), "--input folder '", input, "' has no .png / .jpg images");
    const std::string what =
        input + " (" + std::to_string(files.size()) + " images, " + rate_str(image_fps) + " fps)";
    return std::make_unique<ImageFilesSource>(std::move(files), image_fps, false, what);
  }
  check(fs::is_regular_file(input), "--input '", input, "' is neither a file nor a folder");
  return std::make_unique<ImageFilesSource>(std::vector<fs::path>{input}, image_fps, true, input);
}

std::unique_ptr<FrameSink> open_sink(const std::string& output, const FrameSource& source,
                                     int width, int height, bool timestamps_from_index) {
  const fs::path out(output);
  if (is_video_path(output)) {
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    return std::make_unique<VideoSink>(output, width, height, source.fps(), timestamps_from_index);
  }
  if (source.is_single_image()) {
    check(is_image_path(output), "--output '", output,
          "' must end in .png, .jpg or .jpeg (or be a video file)");
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    return std::make_unique<ImageSink>(out, false);
  }
  check(!is_image_path(output) && (!fs::exists(out) || fs::is_directory(out)), "--output '", output,
        "' must be a folder or a video file when --input is a folder or a video");
  fs::create_directories(out);
  return std::make_unique<ImageSink>(out, true);
}

ProgressLine::ProgressLine(int64_t total) : total_(total), tty_(::isatty(STDERR_FILENO) != 0) {}

void ProgressLine::frame(int64_t index, int64_t written, const StreamStats& s) {
  const int64_t done = written;
  // Frames are never reordered, so inputs before this one that were not written were dropped.
  const int64_t dropped = index + 1 - done;
  if (!tty_) {
    const bool due = total_ > 0 ? (done * 10 / total_ != last_printed_ * 10 / total_ ||
                                   index + 1 >= total_ || !printed_)
                                : (done % 25 == 0 || !printed_);
    if (!due) return;
  }
  char line[160];
  if (total_ > 0)
    std::snprintf(line, sizeof line, "frame %lld/%lld  %.2f fps  skipped %lld  dropped %lld",
                  static_cast<long long>(index + 1), static_cast<long long>(total_), s.fps,
                  static_cast<long long>(s.skipped), static_cast<long long>(dropped));
  else
    std::snprintf(line, sizeof line, "frame %lld  %.2f fps  skipped %lld  dropped %lld",
                  static_cast<long long>(index + 1), s.fps, static_cast<long long>(s.skipped),
                  static_cast<long long>(dropped));
  std::fprintf(stderr, tty_ ? "\r%s   " : "%s\n", line);
  std::fflush(stderr);
  last_printed_ = done;
  printed_ = true;
}

void ProgressLine::finish() {
  if (tty_ && printed_) std::fprintf(stderr, "\n");
}

}  // namespace streamdiff::cli
