// Frame sources, sinks and the progress line of `streamdiff img2img` / `vid2vid`.
#include "stream_io.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "commands.h"
#include "paths.h"

namespace streamdiff::cli {

namespace fs = std::filesystem;

namespace {

std::string rate_str(Rational r) {
  return r.den == 1 ? std::to_string(r.num) : std::to_string(r.num) + "/" + std::to_string(r.den);
}

class ImageFilesSource : public FrameSource {
 public:
  // `first`: the single image, already decoded.
  ImageFilesSource(std::vector<fs::path> files, Rational fps, std::string what, Image first = {})
      : files_(std::move(files)), fps_(fps), what_(std::move(what)), first_(std::move(first)) {}
  bool next(InputFrame& f) override {
    if (f.index >= int64_t(files_.size())) return false;
    const fs::path& file = files_[size_t(f.index)];
    f.name = file.filename().string();
    if (is_single_image()) {
      f.image = std::move(first_);
      return true;
    }
    try {
      f.image = read_image(file.string());
    } catch (const Error& e) {  // one bad image does not end the batch: it is reported, skipped
      f.unreadable = file.string() + ": " + e.what();
    }
    return true;
  }
  int64_t count() const override { return int64_t(files_.size()); }
  Rational fps() const override { return fps_; }
  bool is_single_image() const override { return first_.width > 0; }
  std::string describe() const override { return what_; }

 private:
  std::vector<fs::path> files_;
  Rational fps_;
  std::string what_;
  Image first_;
};

class VideoSource : public FrameSource {
 public:
  VideoSource(const std::string& path, const VideoInputOptions& options)
      : path_(path), reader_(path, options) {
    check(reader_.fps().valid(), "--input '", path,
          "' states no frame rate; give it with --fps (or convert it to a container that states "
          "one, e.g. .mp4)");
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
  bool is_stream() const override { return reader_.is_stream(); }
  bool is_camera() const override { return reader_.is_device(); }
  std::string damage() const override { return reader_.damage(); }
  std::string describe() const override {
    const std::string what = path_ == "-" ? "stdin" : path_;
    return what + " (" + reader_.codec_name() + " " + std::to_string(reader_.width()) + "x" +
           std::to_string(reader_.height()) + ", " + rate_str(reader_.fps()) + " fps" +
           (reader_.is_device()   ? ", camera"
            : reader_.is_stream() ? ", stream"
                                  : "") +
           ")";
  }

 private:
  std::string path_;
  VideoReader reader_;
};

class VideoSink : public FrameSink {
 public:
  VideoSink(const std::string& path, int width, int height, Rational fps, bool timestamps,
            const std::string& format)
      : path_(path),
        format_(format),
        writer_(path, width, height, fps, VideoOutputOptions{format}),
        fps_(fps),
        timestamps_(timestamps) {}
  void write(int64_t index, const std::string&, const Image& img) override {
    if (timestamps_)
      writer_.write(img, index);
    else
      writer_.write(img);
  }
  void close() override { writer_.close(); }
  int64_t written() const override { return writer_.frames_written(); }
  std::string describe() const override {
    return (path_ == "-" ? "stdout (" + format_ : path_ + " (" + writer_.codec_name()) + ", " +
           std::to_string(writer_.frames_written()) + " frames at " + rate_str(fps_) + " fps)";
  }

 private:
  std::string path_;
  std::string format_;  // for stdout: y4m, rawvideo, mjpeg
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
  int64_t written() const override { return written_; }
  std::string describe() const override {
    return target_.string() + (folder_ ? " (" + std::to_string(written_) + " images)" : "");
  }

 private:
  fs::path target_;
  bool folder_;
  int64_t written_ = 0;
};

}  // namespace

std::unique_ptr<FrameSource> open_source(const std::string& input, const SourceOptions& o) {
  VideoInputOptions video = o.video;
  std::error_code ec;
  const bool stream = input == "-" || fs::is_fifo(input, ec) || is_camera_path(input);
  if (stream && o.fps_given && video.frame_rate.empty())
    video.frame_rate = std::to_string(o.image_fps.num) + "/" + std::to_string(o.image_fps.den);
  if (stream || (is_video_path(input) && !fs::is_directory(input, ec))) {
    try {
      return std::make_unique<VideoSource>(input, video);
    } catch (const Error& e) {
      throw Error(e.status(), "--input: " + std::string(e.what()));
    }
  }
  if (fs::is_directory(input, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(input, ec))
      if (e.is_regular_file() && is_image_path(e.path())) files.push_back(e.path());
    check(!ec, "--input '", input, "': cannot list the folder: ", ec.message());
    std::sort(files.begin(), files.end());
    check(!files.empty(), "--input folder '", input, "' has no .png / .jpg images");
    const std::string what =
        input + " (" + std::to_string(files.size()) + " images, " + rate_str(o.image_fps) + " fps)";
    return std::make_unique<ImageFilesSource>(std::move(files), o.image_fps, what);
  }
  Image image;
  try {
    image = read_image(input);
  } catch (const Error& e) {
    throw Error(e.status(), "--input: " + std::string(e.what()));
  }
  return std::make_unique<ImageFilesSource>(std::vector<fs::path>{input}, o.image_fps, input,
                                            std::move(image));
}

std::unique_ptr<FrameSink> open_sink(const std::string& output, const FrameSource& source,
                                     int width, int height, bool timestamps_from_index,
                                     const std::string& stdout_format) {
  const fs::path out(output);
  if (output == "-")
    return std::make_unique<VideoSink>(output, width, height, source.fps(), timestamps_from_index,
                                       stdout_format);
  if (is_video_path(output) || out.extension() == ".y4m") {
    create_parent_folder(output, "--output");
    return std::make_unique<VideoSink>(output, width, height, source.fps(), timestamps_from_index,
                                       "");
  }
  if (source.is_single_image()) {
    check(is_image_path(output), "--output '", output,
          "' must end in .png, .jpg or .jpeg (or be a video file)");
    create_parent_folder(output, "--output");
    return std::make_unique<ImageSink>(out, false);
  }
  std::error_code ec;
  check(!is_image_path(output) && (!fs::exists(out, ec) || fs::is_directory(out, ec)), "--output '",
        output,
        "' must be a folder, a video file or - (stdout) when --input is a folder, a video or a "
        "stream");
  create_folder(output, "--output");
  return std::make_unique<ImageSink>(out, true);
}

ProgressLine::ProgressLine(int64_t total) : total_(total), tty_(::isatty(STDERR_FILENO) != 0) {}

void ProgressLine::frame(int64_t index, int64_t written, int64_t dropped, const StreamStats& s) {
  const int64_t done = written;
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
