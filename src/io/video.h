// Video files through the FFmpeg libraries (libavformat / libavcodec / libswscale).
//
// VideoReader decodes the best video stream of any container and codec the FFmpeg build reads
// (MP4, MKV, MOV, AVI, WebM, GIF, ...) into 8-bit RGB Images, in presentation order. The
// YUV -> RGB conversion follows the stream's colour tags (BT.601 unless it says BT.709,
// limited range unless it says full); no scaling, so an Image has the frame's own size.
//
// VideoWriter encodes 8-bit RGB Images to a file; the encoder follows the extension:
//   .mp4 .mkv .mov  H.264 (libx264, CRF 18) if the build has it, else MPEG-4 part 2
//   .avi            MPEG-4 part 2
//   .webm           VP9 (libvpx-vp9, CRF 30) if the build has it, else VP8
// Pixels are stored as yuv420p (BT.601, limited range, tagged so), which needs even sizes: an
// odd width or height is an error (the writer never pads or crops silently). The file is
// written under a temporary name in the same folder ("<name>.partial") and renamed to its
// final name by close(), so an interrupted run never leaves a half-written file under the
// output name. MP4/MOV files are written with the index at the front (+faststart).
//
// Streams: the reader also takes "-" (stdin, through FFmpeg's pipe:0), FIFOs and capture
// devices (/dev/video*: Video4Linux2 through libavdevice, when the build has it), with an input
// format, frame size, pixel format and rate for inputs that do not state them (raw video, a
// camera's mode). The writer also writes to "-" (stdout, pipe:1) as y4m, raw RGB or MJPEG; no
// temporary file then, and a reader that closes the pipe ends the writing with VideoPipeClosed.
//
// Every error is an sd::Error naming the file (and, when decoding, the frame index).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "io/image.h"

namespace sd {

// A frame rate as a fraction (30000/1001 for NTSC). {0, 1}: unknown.
struct Rational {
  int num = 0, den = 1;
  double value() const { return den != 0 ? double(num) / double(den) : 0.0; }
  bool valid() const { return num > 0 && den > 0; }
};

// Makes FFmpeg (process-wide) print nothing; every failure is still an sd::Error with FFmpeg's
// reason. The library never calls it: FFmpeg's log level belongs to the application (the CLI
// calls it; a host that uses FFmpeg itself keeps its own).
void set_video_log_quiet();

// True when `path`'s extension (case-insensitive) is one of the video containers FFmpeg is
// used for: .mp4 .m4v .mkv .mov .avi .webm .gif .mpg .mpeg .ts .flv .wmv .ogv.
bool is_video_path(const std::string& path);

// What a VideoReader is told about an input that does not say it itself. Empty: not set.
struct VideoInputOptions {
  // FFmpeg's input format (demuxer), e.g. "mjpeg", "yuv4mpegpipe", "rawvideo", "v4l2";
  // empty: probed from the data ("v4l2" for a /dev/video* device).
  std::string format;
  std::string size;          // "WxH": rawvideo, a camera's mode
  std::string pixel_format;  // FFmpeg's name, e.g. "rgb24" (rawvideo), "mjpeg" / "yuyv422" (v4l2)
  std::string frame_rate;    // "30", "30000/1001": rawvideo, MJPEG streams, a camera's mode
  // The largest frame width or height accepted (1 to 8192; 8K video is 7680x4320): a few header
  // bytes can claim any size, and each frame of that size would be allocated and converted.
  int max_side = 8192;
};

// Thrown by VideoWriter when the reader of its pipe (stdout) closed it (EPIPE): not a failure of
// the writer, the end of the output.
class VideoPipeClosed : public Error {
 public:
  using Error::Error;
};

// True for "-" (stdin / stdout), FIFOs and character devices: inputs read as they come.
bool is_stream_path(const std::string& path);
// True for a /dev/video* path or any character device (a camera).
bool is_capture_device(const std::string& path);

class VideoReader {
 public:
  // Opens the file, stream or device and its best video stream; throws naming the path when it
  // is missing, not a media file, has no video stream, or its codec has no decoder in this
  // FFmpeg build. "-" is stdin.
  explicit VideoReader(const std::string& path, const VideoInputOptions& options = {});
  ~VideoReader();
  VideoReader(VideoReader&&) noexcept;
  VideoReader& operator=(VideoReader&&) noexcept;

  const std::string& path() const;
  // The frame size the stream states at open. A stream may change size later: each frame read
  // carries its own (at most max_side a side).
  int width() const;
  int height() const;
  // avg_frame_rate, else r_frame_rate, in lowest terms; a denominator above 1001 that comes
  // from Matroska's whole-nanosecond durations (1000000000/83333333) is snapped to the simple
  // fraction it rounds (12/1). {0, 1} when the file gives neither.
  Rational fps() const;
  // The frame count the container states (MP4/MOV/AVI do; MKV/WebM do not); -1 when unknown.
  int64_t frame_count() const;
  // frame_count(), else duration x fps rounded (for progress display only), else -1.
  int64_t estimated_frame_count() const;
  const std::string& codec_name() const;
  const std::string& format_name() const;  // the demuxer, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  bool is_stream() const;                  // stdin, a FIFO or a device
  bool is_device() const;                  // a capture device (a camera)

  // Decodes the next frame into `rgb` (resized to the frame); false at the end of the stream
  // (after draining the decoder's delayed frames). Before the first frame, a read or decode
  // error throws naming the file. After it, the input is damaged rather than unreadable: a
  // packet the decoder rejects is skipped (8 in a row end the input), and a read error (a file
  // cut short, a pipe or camera gone) ends it; damage() then says what happened.
  bool read(Image& rgb);
  // What went wrong after the first frame: "video 'x.mp4': 1 damaged packet skipped, the last:
  // decoding after frame 34 failed: Invalid data found when processing input", or a read error
  // that ended the input; empty when it was read cleanly.
  std::string damage() const;
  int64_t frames_read() const;  // frames returned by read() so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// How a VideoWriter writes. Empty format: from the path's extension (see above; ".y4m" is y4m).
// For "-" (stdout) the format is needed: "y4m" (yuv4mpegpipe, yuv420p), "rawvideo" (packed
// rgb24 frames, no header) or "mjpeg" (a stream of JPEG images).
struct VideoOutputOptions {
  std::string format;
};

class VideoWriter {
 public:
  // Creates "<path>.partial" (or opens stdout for "-") and starts the encoder chosen from the
  // format or path's extension (see above). Throws naming the file for an unknown extension or
  // format, odd or non-positive sizes, an invalid fps, or an encoder this FFmpeg build lacks.
  VideoWriter(const std::string& path, int width, int height, Rational fps,
              const VideoOutputOptions& options = {});
  // Without close(): closes the file like close() but never throws (a failure is printed on
  // stderr and the partial file removed), except while an exception is unwinding the stack
  // past the writer (std::uncaught_exceptions grew since construction): then the partial file
  // is deleted, so a failed run leaves nothing under the output name.
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // Encodes the next frame (its size must be the writer's). Its timestamp is the previous one
  // plus one frame; the second form sets it in frames from the start (it must increase), for
  // sources that dropped frames.
  void write(const Image& rgb);
  void write(const Image& rgb, int64_t frame_time);
  // Drains the encoder, writes the trailer and renames the file to its final name (stdout:
  // flushes it). Idempotent.
  void close();
  // Deletes the partial file without finishing it (stdout: stops writing). Idempotent; close()
  // after it does nothing.
  void discard();

  const std::string& path() const;         // the final name
  const std::string& codec_name() const;   // e.g. "libx264"
  const std::string& format_name() const;  // the muxer, e.g. "mp4", "yuv4mpegpipe"
  int64_t frames_written() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int uncaught_at_start_ = 0;
};

// The name of the encoder VideoWriter would use for `path`'s extension (or `format`) in this
// FFmpeg build; throws naming the path for an extension or format it does not write.
std::string video_encoder_for(const std::string& path, const std::string& format = "");

}  // namespace sd
