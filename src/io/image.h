// Images on the host: 8-bit RGB, row-major, interleaved (HWC). Reading accepts PNG (8/16-bit,
// gray, gray+alpha, palette, RGB, RGBA) and JPEG; alpha is composited on black... or dropped
// (see image.cpp); gray is replicated to RGB. Writing picks the format from the extension.
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
Image decode_image(const uint8_t* data, size_t size, const std::string& name);
void write_image(const std::string& path, const Image& img, int jpeg_quality = 92);
std::vector<uint8_t> encode_jpeg(const Image& img, int quality = 92);
std::vector<uint8_t> encode_png(const Image& img);

// Scales so the image covers width x height (keeping aspect), then crops the centre.
// Filter: see image.cpp (antialiased when shrinking).
Image resize_cover(const Image& img, int width, int height);

// [1, H, W, 3] f32 in [-1, 1] (NHWC) and back (clamped, rounded).
Tensor image_to_tensor(const Image& img);
Image tensor_to_image(const Tensor& t);  // t: [1, H, W, 3] or [H, W, 3], f32 in [-1, 1]

}  // namespace sd
