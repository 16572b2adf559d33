// streamdiff media: images and videos in and out, for hosts that have no image library of their
// own (the CLI is written on these). PNG and JPEG through libpng and TurboJPEG; videos through
// FFmpeg. Every failure throws streamdiff::Error (status Io) naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "streamdiff/streamdiff.hpp"

namespace streamdiff {

// An 8-bit RGB image that owns its pixels (packed rows).
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3

  ImageView view() const {
    return {rgb.data(), width, height, size_t(width) * 3, PixelFormat::RGB8};
  }
  MutableImageView mutable_view() {
    return {rgb.data(), width, height, size_t(width) * 3, PixelFormat::RGB8};
  }
};

// PNG or JPEG (sniffed from the bytes): alpha dropped, gray to RGB, 16-bit scaled to 8.
STREAMDIFF_API Image read_image(const std::string& path);
// max_side: the largest width or height accepted (at most 32768), checked on the header before
// any pixel memory is allocated; for untrusted input such as a server's clients.
STREAMDIFF_API Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                                  int max_side = 1 << 15);
// The format follows the extension (.png, .jpg, .jpeg).
STREAMDIFF_API void write_image(const std::string& path, const Image& image, int jpeg_quality = 92);
STREAMDIFF_API std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 92);
STREAMDIFF_API std::vector<uint8_t> encode_png(const Image& image);
// Pixels of any format and stride as an RGB Image (a copy).
STREAMDIFF_API Image to_image(const ImageView& view);
// Scaled to cover width x height (keeping the aspect ratio), then centre-cropped; antialiased
// when shrinking (PIL's bilinear filter). The same as a Stream does with an input of another size.
STREAMDIFF_API Image resize_cover(const Image& image, int width, int height);

STREAMDIFF_API bool is_image_path(const std::string& path);  // .png .jpg .jpeg
// .mp4 .m4v .mkv .mov .avi .webm .gif .mpg .mpeg .ts .flv .wmv .ogv (case-insensitive)
STREAMDIFF_API bool is_video_path(const std::string& path);

// A frame rate as a fraction (30000/1001 for NTSC); {0, 1}: unknown.
struct Rational {
  int num = 0;
  int den = 1;
  double value() const { return den != 0 ? double(num) / double(den) : 0.0; }
  bool valid() const { return num > 0 && den > 0; }
};
// "30", "12.5" or "30000/1001"; throws InvalidArgument otherwise.
STREAMDIFF_API Rational parse_frame_rate(const std::string& text);

// What a VideoReader is told about an input that does not say it itself (raw video, a camera's
// mode, an MJPEG stream's rate). Empty: not set.
struct VideoInputOptions {
  // FFmpeg's input format (demuxer): "mjpeg", "yuv4mpegpipe" (or "y4m"), "rawvideo", "v4l2", ...;
  // empty: probed from the data ("v4l2" for a /dev/video* device).
  std::string format;
  std::string size;          // "WxH": needed by rawvideo; a camera's mode
  std::string pixel_format;  // FFmpeg's name: "rgb24" (rawvideo), "mjpeg" or "yuyv422" (v4l2)
  std::string frame_rate;    // "30", "30000/1001": rawvideo, MJPEG streams, a camera's mode
  // The largest frame width or height accepted, 1 to 8192 (8K video is 7680x4320); a larger
  // stream is an error at open, a larger frame later is a damaged packet.
  int max_side = 8192;
};

// Decodes the best video stream of a file, a stream or a camera into RGB images, in
// presentation order. Paths: a file; "-" (stdin, read as it comes: anything FFmpeg demuxes
// from a pipe, e.g. y4m, MJPEG, MPEG-TS, Matroska, or raw video with options); a FIFO; a
// Video4Linux2 device (/dev/video*, through libavdevice when the build has it).
class STREAMDIFF_API VideoReader {
 public:
  explicit VideoReader(const std::string& path);
  VideoReader(const std::string& path, const VideoInputOptions& options);
  ~VideoReader();
  VideoReader(VideoReader&&) noexcept;
  VideoReader& operator=(VideoReader&&) noexcept;

  // The frame size the stream states at open. A stream may change size later: each Image read
  // carries its own (a Stream resizes inputs of another size).
  int width() const;
  int height() const;
  Rational fps() const;
  int64_t frame_count() const;            // as the container states it; -1 when unknown
  int64_t estimated_frame_count() const;  // frame_count(), else duration x fps, else -1
  const std::string& codec_name() const;
  bool is_stream() const;  // stdin, a FIFO or a device: no seeking, length unknown
  bool is_device() const;  // a camera: frames come in real time
  // The next frame; false at the end. A damaged input (a file cut short, a pipe or camera gone,
  // packets that do not decode) throws only before its first frame; after it, damaged packets
  // are skipped and a read error ends the input, and damage() says what happened ("" when the
  // input was read cleanly).
  bool read(Image& frame);
  std::string damage() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// How a VideoWriter writes: format empty = from the path's extension; for "-" (stdout) one of
// "y4m" (YUV4MPEG2, yuv420p), "rawvideo" (packed RGB24 frames, nothing else) or "mjpeg" (JPEG
// images one after the other), which may also be given for files.
struct VideoOutputOptions {
  std::string format;
};

// Encodes RGB images to a video file; the codec follows the extension (.mp4 .mkv .mov: H.264,
// .avi: MPEG-4, .webm: VP9, .y4m: raw YUV). Written as "<path>.partial" and renamed by close(),
// so a failed or interrupted run never leaves a truncated file under the final name. "-" writes
// to stdout (each frame flushed at once, for a pipe to a player, ffmpeg or a virtual camera);
// when the reader closes the pipe, write() and close() throw Error with Status::Closed (the
// application should ignore SIGPIPE: the library never touches signal handlers).
class STREAMDIFF_API VideoWriter {
 public:
  VideoWriter(const std::string& path, int width, int height, Rational fps);
  VideoWriter(const std::string& path, int width, int height, Rational fps,
              const VideoOutputOptions& options);
  ~VideoWriter();  // without close(): the partial file is removed
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  void write(const Image& frame);
  void write(const Image& frame, int64_t frame_time);  // in frames from the start, increasing
  void close();
  void discard();  // removes the partial file
  const std::string& codec_name() const;
  int64_t frames_written() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Makes FFmpeg print nothing (its default prints warnings and stream details): every failure still
// reaches the application as an Error naming the file and FFmpeg's reason. This changes FFmpeg's
// process-wide log level, so the library never calls it on its own: an application that wants
// quiet video IO calls it once (the CLI does).
STREAMDIFF_API void set_video_log_quiet();

// The encoder VideoWriter would use for `path` in this build; throws for another extension.
STREAMDIFF_API std::string video_encoder_for(const std::string& path);
// The same for `path` written as `options` says (e.g. "-" with format "y4m").
STREAMDIFF_API std::string video_encoder_for(const std::string& path,
                                             const VideoOutputOptions& options);

}  // namespace streamdiff
