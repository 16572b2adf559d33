// Where `streamdiff img2img` / `vid2vid` frames come from and where they go.
//
// Sources: one image, a folder of images (.png / .jpg, in file-name order) or a video file
// (by extension, see is_video_path; decoded by VideoReader). Sinks: one image, a folder of
// images (a folder input keeps its file names; a video input gives frame_000000.png, ...) or a
// video file (VideoWriter; the frame rate is the source's).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "io/image.h"
#include "io/video.h"
#include "pipeline/frame_queue.h"
#include "pipeline/stream_runner.h"

namespace sd::cli {

bool is_image_path(const std::filesystem::path& p);  // .png .jpg .jpeg, case-insensitive

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // Fills in frame f.index: f.name, and f.path (an image file, decoded later by
  // take_input_image on the preprocess thread) or f.image (a decoded video frame). False at
  // the end of the input.
  virtual bool next(Frame& f) = 0;
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

// The decoded input image of a frame filled in by a FrameSource (moved out of f.image, or read
// from f.path).
Image take_input_image(Frame& f);

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void write(const Frame& f, const Image& img) = 0;
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
  void frame(const Frame& f, const StreamRunStats& so_far);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  int64_t last_printed_ = 0;
  bool printed_ = false;
};

}  // namespace sd::cli
