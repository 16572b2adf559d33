// Images on the host: 8-bit RGB, row-major, interleaved (HWC). Reading accepts PNG (1..16-bit,
// gray, gray+alpha, palette, RGB, RGBA, interlaced) and JPEG (RGB/YCbCr, grayscale, CMYK/YCCK);
// the format is sniffed from the magic bytes, not the extension. Alpha (and PNG tRNS
// transparency) is dropped, not composited: the colour channels are kept as they are, which is
// what PIL's Image.convert("RGB") does in the reference StreamDiffusion pipeline. Gray is
// replicated to RGB; 16-bit samples are scaled to 8 bits with rounding; no gamma correction.
// Writing picks the format from the extension (.png, .jpg, .jpeg; case-insensitive).
// Every error is an sd::Error naming the file (or `name`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sd {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3
};

Image read_image(const std::string& path);  // PNG or JPEG, sniffed from the bytes
// max_side: the largest width or height accepted, checked on the header before any pixel memory
// is allocated (never above 32768).
Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                   int max_side = 1 << 15);
void write_image(const std::string& path, const Image& img, int jpeg_quality = 92);
std::vector<uint8_t> encode_jpeg(const Image& img, int quality = 92);
std::vector<uint8_t> encode_png(const Image& img);

// Scales so the image covers width x height (keeping aspect), then crops the centre.
// Filter: triangle (bilinear) with support widened by the shrink factor, like PIL's BILINEAR
// resize, so shrinking is antialiased (see image_resize.cpp). Single-threaded (see there why).
Image resize_cover(const Image& img, int width, int height);
// The same result computed directly from the filter's definition (slow; for tests). Agrees with
// resize_cover to within 1 per sample (float vs double rounding).
Image resize_cover_reference(const Image& img, int width, int height);

// [1, H, W, 3] f32 in [-1, 1] (NHWC): x / 127.5 - 1.
Tensor image_to_tensor(const Image& img);
// t: [1, H, W, 3] or [H, W, 3] host tensor (f32, or f16/bf16 converted first), values in
// [-1, 1]: clamped to [-1, 1], then (x + 1) * 127.5 rounded half up; NaN becomes 0.
Image tensor_to_image(const Tensor& t);

}  // namespace sd
