// Where `streamdiff img2img` / `vid2vid` frames come from and where they go.
//
// Sources: one image, a folder of images (.png / .jpg, in file-name order; an image that cannot
// be read is skipped and reported), a video file (by extension, see streamdiff::is_video_path),
// a stream ("-" for stdin, or a FIFO: anything FFmpeg demuxes, e.g. y4m, MJPEG, MPEG-TS, or raw
// video described by --input-format etc.) or a camera (/dev/video*, Video4Linux2). Sinks: one
// image, a folder of images (a folder input keeps its file names; a video input gives
// frame_000000.png, ...), a video file (the frame rate is the source's) or stdout ("-": y4m,
// rawvideo or mjpeg).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

// One input frame: its position in the input, its name (for naming outputs) and its pixels;
// or, for an image of a folder that cannot be read, why (then `image` is empty).
struct InputFrame {
  int64_t index = 0;
  std::string name;
  Image image;
  std::string unreadable;  // "frames/x.png: <reason>" for an image skipped
};

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // Reads and decodes frame f.index (f.name, f.image, or f.unreadable); false at the end.
  virtual bool next(InputFrame& f) = 0;
  virtual int64_t count() const = 0;  // exact frame count, -1 when unknown
  virtual int64_t estimated_count() const { return count(); }
  virtual Rational fps() const = 0;  // the video's, or the --fps given for images
  virtual bool is_video() const { return false; }
  // Frames arrive at their own pace (stdin, a FIFO, a camera): never paced by --live.
  virtual bool is_stream() const { return false; }
  virtual bool is_camera() const { return false; }
  virtual bool is_single_image() const { return false; }
  // What went wrong with a video input after its first frame (VideoReader::damage); "" if nothing.
  virtual std::string damage() const { return ""; }
  virtual std::string describe() const = 0;
};

// How the input is opened: the frame rate of images (and of streams that state none, like raw
// video and MJPEG) and FFmpeg's input options for streams and cameras.
struct SourceOptions {
  Rational image_fps{30, 1};
  bool fps_given = false;  // --fps: also the rate given to a stream or camera
  VideoInputOptions video;
};

// Opens `input` (the value of --input): "-" or a FIFO (a stream), a camera, a video (by
// extension), a folder of images, or one image (decoded now, so a bad one fails before the
// model is loaded).
std::unique_ptr<FrameSource> open_source(const std::string& input, const SourceOptions& options);

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // The output made while input `index` (named `name`) was consumed.
  virtual void write(int64_t index, const std::string& name, const Image& img) = 0;
  virtual void close() {}
  virtual int64_t written() const = 0;
  virtual std::string describe() const = 0;  // for the summary
};

// Opens the output for `source`: stdout for "-" (as `stdout_format`: y4m, rawvideo or mjpeg),
// a video file when `output` has a video extension (with `timestamps_from_index`, each frame
// keeps its input frame's time, so frames dropped by a live run show as held frames and the
// video stays in real time), one image file for one image in, otherwise a folder (created).
std::unique_ptr<FrameSink> open_sink(const std::string& output, const FrameSource& source,
                                     int width, int height, bool timestamps_from_index,
                                     const std::string& stdout_format);

// The per-frame progress line on stderr: "\r" updates on a terminal, a plain line every ~10%
// (every 25 frames when the total is unknown) otherwise.
class ProgressLine {
 public:
  explicit ProgressLine(int64_t total);  // total <= 0: unknown
  // After the output made while input `index` was consumed: `written` outputs so far, `dropped`
  // inputs dropped so far (--live).
  void frame(int64_t index, int64_t written, int64_t dropped, const StreamStats& so_far);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  int64_t last_printed_ = 0;
  bool printed_ = false;
};

}  // namespace streamdiff::cli
