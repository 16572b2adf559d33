// Frames between the host's pixels (u8 RGB / BGR / RGBA / BGRA with a row stride) and the
// Stream's f32 tensors. Inputs become RGB in [-1, 1] as the original computes it (x / 255,
// then 2x − 1); an input of another size is first scaled to cover the stream's size and
// centre-cropped (resize_cover, the CLI's sizing). Outputs [0, 1] become round(255 x), alpha 255.
#pragma once

#include <cstddef>
#include <cstdint>

#include "io/image.h"
#include "streamdiff/streamdiff.hpp"

namespace streamdiff::detail {

size_t row_bytes(int width, PixelFormat format);
size_t stride_of(const ImageView& v);
size_t stride_of(const MutableImageView& v);
// Throws InvalidArgument naming `what` for null data, a non-positive size, an unknown format or
// a stride shorter than a row.
void check_view(const ImageView& v, const char* what);
// The same, and the size must be width x height.
void check_view(const MutableImageView& v, int width, int height, const char* what);

// Converts inputs into a stream's input rows; keeps the scratch images a resize needs, so a run
// of same-sized inputs reuses their memory.
class InputConverter {
 public:
  // dst: [height, width, 3] f32.
  void convert(const ImageView& in, int width, int height, float* dst);

 private:
  sd::Image rgb_;  // the input as packed RGB, when it must be resized
};

// src: [height, width, 3] f32 in [0, 1] (the output's size) into `out`.
void write_output(const float* src, const MutableImageView& out);

// Copies pixels between views of the same size, converting the format.
void copy_pixels(const ImageView& src, const MutableImageView& dst);

// The pixels of `v` as a packed RGB image.
void to_rgb(const ImageView& v, sd::Image& out);

}  // namespace streamdiff::detail
