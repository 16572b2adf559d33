#include "api/frame_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "api/api_common.h"

namespace streamdiff::detail {

namespace {

bool known(PixelFormat f) {
  return f == PixelFormat::RGB8 || f == PixelFormat::BGR8 || f == PixelFormat::RGBA8 ||
         f == PixelFormat::BGRA8;
}
bool bgr(PixelFormat f) {
  return f == PixelFormat::BGR8 || f == PixelFormat::BGRA8;
}

template <typename View>
void check_common(const View& v, const char* what) {
  require(known(v.format), what, ": unknown pixel format ", int(v.format));
  require(v.data != nullptr, what, ": no pixel data (null pointer)");
  require(v.width > 0 && v.height > 0, what, ": size ", v.width, "x", v.height, " is not positive");
  require(v.stride == 0 || v.stride >= row_bytes(v.width, v.format), what, ": stride ", v.stride,
          " is shorter than a row of ", v.width, " pixels (", row_bytes(v.width, v.format),
          " bytes)");
}

}  // namespace

size_t row_bytes(int width, PixelFormat format) {
  return size_t(width) * size_t(bytes_per_pixel(format));
}
size_t stride_of(const ImageView& v) {
  return v.stride ? v.stride : row_bytes(v.width, v.format);
}
size_t stride_of(const MutableImageView& v) {
  return v.stride ? v.stride : row_bytes(v.width, v.format);
}

void check_view(const ImageView& v, const char* what) {
  check_common(v, what);
}

void check_view(const MutableImageView& v, int width, int height, const char* what) {
  check_common(v, what);
  require(v.width == width && v.height == height, what, ": ", v.width, "x", v.height,
          ", the stream's frames are ", width, "x", height);
}

void copy_pixels(const ImageView& src, const MutableImageView& dst) {
  const int sb = bytes_per_pixel(src.format), db = bytes_per_pixel(dst.format);
  const bool swap = bgr(src.format) != bgr(dst.format);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* s = src.data + size_t(y) * stride_of(src);
    uint8_t* d = dst.data + size_t(y) * stride_of(dst);
    if (src.format == dst.format) {
      std::memcpy(d, s, row_bytes(src.width, src.format));
      continue;
    }
    for (int x = 0; x < src.width; ++x, s += sb, d += db) {
      d[0] = s[swap ? 2 : 0];
      d[1] = s[1];
      d[2] = s[swap ? 0 : 2];
      if (db == 4) d[3] = sb == 4 ? s[3] : 255;
    }
  }
}

void to_rgb(const ImageView& v, sd::Image& out) {
  out.width = v.width;
  out.height = v.height;
  out.rgb.resize(size_t(v.width) * size_t(v.height) * 3);
  copy_pixels(v, MutableImageView{out.rgb.data(), v.width, v.height, 0, PixelFormat::RGB8});
}

void InputConverter::convert(const ImageView& in, int width, int height, float* dst) {
  ImageView v = in;
  sd::Image resized;
  if (in.width != width || in.height != height) {
    to_rgb(in, rgb_);
    resized = sd::resize_cover(rgb_, width, height);
    v = ImageView{resized.rgb.data(), width, height, size_t(width) * 3, PixelFormat::RGB8};
  }
  const int bpp = bytes_per_pixel(v.format);
  const int r = bgr(v.format) ? 2 : 0, b = 2 - r;
  for (int y = 0; y < height; ++y) {
    const uint8_t* src = v.data + size_t(y) * stride_of(v);
    for (int x = 0; x < width; ++x, src += bpp, dst += 3) {
      for (int c = 0; c < 3; ++c) {
        const float u = float(src[c == 0 ? r : c == 1 ? 1 : b]) / 255.f;
        dst[c] = 2.f * u - 1.f;
      }
    }
  }
}

void write_output(const float* src, const MutableImageView& out) {
  const int bpp = bytes_per_pixel(out.format);
  const int r = bgr(out.format) ? 2 : 0, b = 2 - r;
  auto u8 = [](float v) {
    v = std::clamp(v, 0.f, 1.f);  // NaN stays NaN here and becomes 0 below
    return v > 0 ? uint8_t(std::lround(v * 255.f)) : uint8_t(0);
  };
  for (int y = 0; y < out.height; ++y) {
    uint8_t* dst = out.data + size_t(y) * stride_of(out);
    for (int x = 0; x < out.width; ++x, src += 3, dst += bpp) {
      dst[r] = u8(src[0]);
      dst[1] = u8(src[1]);
      dst[b] = u8(src[2]);
      if (bpp == 4) dst[3] = 255;
    }
  }
}

}  // namespace streamdiff::detail
