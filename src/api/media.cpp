// The public media functions (streamdiff/media.hpp): thin wrappers over the engine's image and
// video I/O (io/image.h, io/video.h). streamdiff::Image and sd::Image hold the same fields, so
// results are handed over by moving the pixel vector; inputs are copied into an sd::Image (one
// memcpy, reused per writer). Engine errors become Error(Status::Io); a malformed argument
// (an Image whose size and pixels disagree, a bad frame rate) is InvalidArgument.
#include "streamdiff/media.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <utility>

#include "api/api_common.h"
#include "api/frame_convert.h"
#include "io/image.h"
#include "io/video.h"

namespace streamdiff {

using detail::guarded;
using detail::require;

namespace {

Image from_sd(sd::Image&& s) {
  Image out;
  out.width = s.width;
  out.height = s.height;
  out.rgb = std::move(s.rgb);
  return out;
}

// Checks that `image` is what its fields say (a public struct: anything can be in it).
void check_image(const Image& image, const char* what) {
  require(image.width > 0 && image.height > 0, what, ": image size ", image.width, "x",
          image.height, " is not positive");
  const size_t bytes = size_t(image.width) * size_t(image.height) * 3;
  require(image.rgb.size() == bytes, what, ": image ", image.width, "x", image.height, " holds ",
          image.rgb.size(), " bytes, expected ", bytes);
}

// `image` copied into `out` (whose memory is reused when it is large enough).
void copy_to_sd(const Image& image, sd::Image& out) {
  out.width = image.width;
  out.height = image.height;
  out.rgb.assign(image.rgb.begin(), image.rgb.end());
}

sd::Image to_sd(const Image& image) {
  sd::Image out;
  copy_to_sd(image, out);
  return out;
}

// Parses all of [first, last) as a number; false if anything is left over or it does not parse.
template <typename T>
bool parse_all(const char* first, const char* last, T& value) {
  if (first == last) return false;
  const auto [end, ec] = std::from_chars(first, last, value);
  return ec == std::errc() && end == last;
}

}  // namespace

// ---- images -------------------------------------------------------------------------------------

Image read_image(const std::string& path) {
  return guarded(Status::Io, [&] { return from_sd(sd::read_image(path)); });
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name, int max_side) {
  return guarded(Status::Io, [&] {
    require(data != nullptr || size == 0, "decode_image '", name, "': null data of ", size,
            " bytes");
    require(max_side > 0 && max_side <= (1 << 15), "decode_image '", name, "': max_side ", max_side,
            " is not in [1, 32768]");
    return from_sd(sd::decode_image(data, size, name, max_side));
  });
}

void write_image(const std::string& path, const Image& image, int jpeg_quality) {
  guarded(Status::Io, [&] {
    check_image(image, ("write_image '" + path + "'").c_str());
    require(jpeg_quality >= 1 && jpeg_quality <= 100, "write_image '", path, "': JPEG quality ",
            jpeg_quality, " is not in [1, 100]");
    sd::write_image(path, to_sd(image), jpeg_quality);
  });
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality) {
  return guarded(Status::Io, [&] {
    check_image(image, "encode_jpeg");
    require(quality >= 1 && quality <= 100, "encode_jpeg: quality ", quality,
            " is not in [1, 100]");
    return sd::encode_jpeg(to_sd(image), quality);
  });
}

std::vector<uint8_t> encode_png(const Image& image) {
  return guarded(Status::Io, [&] {
    check_image(image, "encode_png");
    return sd::encode_png(to_sd(image));
  });
}

Image to_image(const ImageView& view) {
  return guarded(Status::InvalidArgument, [&] {
    detail::check_view(view, "to_image");
    sd::Image rgb;
    detail::to_rgb(view, rgb);
    return from_sd(std::move(rgb));
  });
}

Image resize_cover(const Image& image, int width, int height) {
  return guarded(Status::InvalidArgument, [&] {
    check_image(image, "resize_cover");
    require(width > 0 && height > 0, "resize_cover: target size ", width, "x", height,
            " is not positive");
    return from_sd(sd::resize_cover(to_sd(image), width, height));
  });
}

void set_video_log_quiet() {
  sd::set_video_log_quiet();
}

bool is_image_path(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

bool is_video_path(const std::string& path) {
  return sd::is_video_path(path);
}

// ---- frame rates --------------------------------------------------------------------------------

Rational parse_frame_rate(const std::string& text) {
  // std::from_chars rather than std::stod: it ignores the host's locale (a decimal comma).
  Rational r;
  const char* first = text.data();
  const char* last = first + text.size();
  const size_t slash = text.find('/');
  if (slash != std::string::npos) {
    int num = 0, den = 0;
    if (parse_all(first, first + slash, num) && parse_all(first + slash + 1, last, den))
      r = {num, den};
  } else {
    double v = 0;
    if (parse_all(first, last, v) && v > 0 && v < 1e6) {
      r = {int(std::lround(v * 1000)), 1000};
      for (int d : {1, 2, 4, 5, 10, 100})  // the simplest exact form: 12.5 -> 25/2
        if (std::abs(v * d - std::round(v * d)) < 1e-9) {
          r = {int(std::lround(v * d)), d};
          break;
        }
    }
  }
  if (!r.valid())
    throw Error(Status::InvalidArgument,
                "frame rate '" + text + "' is not a frame rate (e.g. 30, 12.5 or 30000/1001)");
  return r;
}

// ---- video reading ------------------------------------------------------------------------------

struct VideoReader::Impl {
  sd::VideoReader reader;
};

namespace {

sd::VideoReader& live(const std::unique_ptr<VideoReader::Impl>& impl) {
  require(impl != nullptr, "video reader: used after being moved from");
  return impl->reader;
}

}  // namespace

VideoReader::VideoReader(const std::string& path) : VideoReader(path, VideoInputOptions{}) {}

VideoReader::VideoReader(const std::string& path, const VideoInputOptions& options)
    : impl_(guarded(Status::Io, [&] {
        const sd::VideoInputOptions o{options.format, options.size, options.pixel_format,
                                      options.frame_rate, options.max_side};
        return std::make_unique<Impl>(Impl{sd::VideoReader(path, o)});
      })) {}
VideoReader::~VideoReader() = default;
VideoReader::VideoReader(VideoReader&&) noexcept = default;
VideoReader& VideoReader::operator=(VideoReader&&) noexcept = default;

int VideoReader::width() const {
  return live(impl_).width();
}
int VideoReader::height() const {
  return live(impl_).height();
}
Rational VideoReader::fps() const {
  const sd::Rational r = live(impl_).fps();
  return {r.num, r.den};
}
int64_t VideoReader::frame_count() const {
  return live(impl_).frame_count();
}
int64_t VideoReader::estimated_frame_count() const {
  return live(impl_).estimated_frame_count();
}
const std::string& VideoReader::codec_name() const {
  return live(impl_).codec_name();
}
bool VideoReader::is_stream() const {
  return live(impl_).is_stream();
}
bool VideoReader::is_device() const {
  return live(impl_).is_device();
}

std::string VideoReader::damage() const {
  return live(impl_).damage();
}

bool VideoReader::read(Image& frame) {
  return guarded(Status::Io, [&] {
    sd::VideoReader& reader = live(impl_);
    // The frame's memory is lent to the decoder and given back, also when it throws, so reading
    // into the same Image allocates only when the size changes.
    sd::Image rgb;
    rgb.width = frame.width;
    rgb.height = frame.height;
    rgb.rgb = std::move(frame.rgb);
    struct GiveBack {
      sd::Image& from;
      Image& to;
      ~GiveBack() {
        to.width = from.width;
        to.height = from.height;
        to.rgb = std::move(from.rgb);
      }
    } give_back{rgb, frame};
    return reader.read(rgb);
  });
}

// ---- video writing ------------------------------------------------------------------------------

struct VideoWriter::Impl {
  Impl(const std::string& path, int width, int height, Rational fps,
       const VideoOutputOptions& options)
      : writer(path, width, height, sd::Rational{fps.num, fps.den},
               sd::VideoOutputOptions{options.format}) {}
  sd::VideoWriter writer;
  sd::Image scratch;  // the frame being written, as the engine takes it (memory reused)
};

namespace {

// guarded(Io), with a reader that closed the writer's pipe reported as Status::Closed.
template <typename F>
auto writing(F&& fn) -> decltype(fn()) {
  return guarded(Status::Io, [&] {
    try {
      return fn();
    } catch (const sd::VideoPipeClosed& e) {
      throw Error(Status::Closed, e.what());
    }
  });
}

}  // namespace

VideoWriter::VideoWriter(const std::string& path, int width, int height, Rational fps)
    : VideoWriter(path, width, height, fps, VideoOutputOptions{}) {}

VideoWriter::VideoWriter(const std::string& path, int width, int height, Rational fps,
                         const VideoOutputOptions& options)
    : impl_(writing([&] {
        require(fps.valid(), "video '", path, "': frame rate ", fps.num, "/", fps.den,
                " is not positive");
        return std::make_unique<Impl>(path, width, height, fps, options);
      })) {}

VideoWriter::~VideoWriter() {
  // The engine's writer would finish the file; the public contract is that only close() does.
  try {
    impl_->writer.discard();
  } catch (...) {  // a destructor must not throw; nothing is left to clean up
  }
}

void VideoWriter::write(const Image& frame) {
  writing([&] {
    check_image(frame, ("video '" + impl_->writer.path() + "'").c_str());
    copy_to_sd(frame, impl_->scratch);
    impl_->writer.write(impl_->scratch);
  });
}

void VideoWriter::write(const Image& frame, int64_t frame_time) {
  writing([&] {
    check_image(frame, ("video '" + impl_->writer.path() + "'").c_str());
    copy_to_sd(frame, impl_->scratch);
    impl_->writer.write(impl_->scratch, frame_time);
  });
}

void VideoWriter::close() {
  writing([&] { impl_->writer.close(); });
}

void VideoWriter::discard() {
  guarded(Status::Io, [&] { impl_->writer.discard(); });
}

const std::string& VideoWriter::codec_name() const {
  return impl_->writer.codec_name();
}

int64_t VideoWriter::frames_written() const {
  return impl_->writer.frames_written();
}

std::string video_encoder_for(const std::string& path) {
  return guarded(Status::Io, [&] { return sd::video_encoder_for(path); });
}

std::string video_encoder_for(const std::string& path, const VideoOutputOptions& options) {
  return guarded(Status::Io, [&] { return sd::video_encoder_for(path, options.format); });
}

}  // namespace streamdiff
