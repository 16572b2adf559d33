// Where `streamdiff img2img` / `vid2vid` frames come from and where they go.
//
// Sources: one image, a folder of images (.png / .jpg, in file-name order) or a video file (by
// extension, see streamdiff::is_video_path). Sinks: one image, a folder of images (a folder
// input keeps its file names; a video input gives frame_000000.png, ...) or a video file (the
// frame rate is the source's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "streamdiff/media.hpp"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::cli {

// One input frame: its position in the input, its name (for naming outputs) and its pixels.
struct InputFrame {
  int64_t index = 0;
  std::string name;
  Image image;
};

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // Reads and decodes frame f.index (f.name, f.image); false at the end of the input.
  virtual bool next(InputFrame& f) = 0;
  virtual int64_t count() const = 0;  // exact frame count, -1 when unknown
  virtual int64_t estimated_count() const { return count(); }
  virtual Rational fps() const = 0;  // the video's, or the --fps given for images
  virtual bool is_video() const { return false; }
  virtual bool is_single_image() const { return false; }
  virtual std::string describe() const = 0;
};

// Opens `input`: a video (by extension), a folder of images, or one image. `image_fps` is the
// frame rate given to image inputs (for a video output and --live).
std::unique_ptr<FrameSource> open_source(const std::string& input, Rational image_fps);

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // The output made while input `index` (named `name`) was consumed.
  virtual void write(int64_t index, const std::string& name, const Image& img) = 0;
  virtual void close() {}
  virtual std::string describe() const = 0;  // for the summary
};

// Opens the output for `source`: a video file when `output` has a video extension (with
// `timestamps_from_index`, each frame keeps its input frame's time, so frames dropped by a live
// run show as held frames and the video stays in real time); one image file for one image in;
// otherwise a folder (created if needed).
std::unique_ptr<FrameSink> open_sink(const std::string& output, const FrameSource& source,
                                     int width, int height, bool timestamps_from_index);

// The per-frame progress line on stderr: "\r" updates on a terminal, a plain line every ~10%
// (every 25 frames when the total is unknown) otherwise.
class ProgressLine {
 public:
  explicit ProgressLine(int64_t total);  // total <= 0: unknown
  // After the output made while input `index` was consumed; `written` outputs so far.
  void frame(int64_t index, int64_t written, const StreamStats& so_far);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  int64_t last_printed_ = 0;
  bool printed_ = false;
};

}  // namespace streamdiff::cli
