// resize_cover: scale so the image covers the target (keeping aspect), crop the centre.
//
// Filter: the triangle (bilinear) kernel with its support widened by the shrink factor, as in
// PIL's Image.resize(..., BILINEAR): output sample i of an axis scaled from `in` to `scaled`
// pixels sits at input coordinate c = (i + 0.5) * in / scaled; input pixel j (centre j + 0.5)
// gets weight max(0, 1 - |j + 0.5 - c| / f) with f = max(in / scaled, 1), and the weights are
// normalised to sum to one. Upscaling is therefore plain bilinear interpolation; shrinking
// averages over the whole footprint (antialiased). Values stay in [0, 255] (weights are
// non-negative) and are rounded to nearest at the end only.
//
// Two versions: resize_cover_reference evaluates that definition directly per output pixel (in
// double, over every input pixel); resize_cover precomputes the taps per row and column and
// runs two separable passes in float (vertical, then horizontal).
//
// resize_cover is single-threaded on purpose: it runs on the pipeline's IO threads next to the
// denoiser's OpenMP team. With OpenMP over rows, 879x879 -> 512x512 took 20 ms on 2 threads
// against 4 ms on 1 while the other core was busy (2-core Zen 5 VM); a caller that wants more
// throughput can resize several frames at once.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "io/image.h"

namespace sd {

namespace {

// Where the cropped output lies inside the scaled image.
struct CoverGeometry {
  int scaled_w, scaled_h;  // size of the whole scaled image
  int x0, y0;              // top-left of the crop inside it
};

CoverGeometry cover_geometry(const Image& img, int width, int height) {
  SD_CHECK(img.width > 0 && img.height > 0 &&
               img.rgb.size() == size_t(img.width) * size_t(img.height) * 3,
           "resize_cover: invalid source image ", img.width, "x", img.height, " with ",
           img.rgb.size(), " bytes");
  SD_CHECK(width > 0 && height > 0 && width <= (1 << 15) && height <= (1 << 15),
           "resize_cover: invalid target size ", width, "x", height);
  const double s = std::max(double(width) / img.width, double(height) / img.height);
  CoverGeometry g;
  g.scaled_w = std::max(width, int(std::lround(img.width * s)));
  g.scaled_h = std::max(height, int(std::lround(img.height * s)));
  g.x0 = (g.scaled_w - width) / 2;
  g.y0 = (g.scaled_h - height) / 2;
  return g;
}

double triangle(double x) {
  return std::max(0.0, 1.0 - std::abs(x));
}

uint8_t round_to_u8(double v) {
  return uint8_t(std::clamp(std::floor(v + 0.5), 0.0, 255.0));
}

// Taps of one axis for the output samples offset .. offset + count - 1 of an axis scaled from
// `in` to `scaled` pixels: sample i reads inputs first[i] .. first[i] + size[i] - 1.
struct AxisTaps {
  std::vector<int> first, size;
  std::vector<float> weights;  // max_taps per sample
  int max_taps = 0;
};

AxisTaps make_taps(int in, int scaled, int offset, int count) {
  const double scale = double(in) / scaled;
  const double widen = std::max(scale, 1.0);
  const double support = widen;  // triangle support 1, widened when shrinking
  AxisTaps t;
  t.max_taps = int(std::ceil(support)) * 2 + 1;
  t.first.resize(size_t(count));
  t.size.resize(size_t(count));
  t.weights.assign(size_t(count) * size_t(t.max_taps), 0.f);
  std::vector<double> w(size_t(t.max_taps));
  for (int i = 0; i < count; ++i) {
    const double center = (i + offset + 0.5) * scale;
    const int lo = std::max(0, int(std::floor(center - support)));
    const int hi = std::min(in, int(std::ceil(center + support)));
    double sum = 0;
    int n = 0;
    for (int j = lo; j < hi && n < t.max_taps; ++j, ++n)
      sum += w[size_t(n)] = triangle((j + 0.5 - center) / widen);
    t.first[size_t(i)] = lo;
    t.size[size_t(i)] = n;
    for (int k = 0; k < n; ++k)
      t.weights[size_t(i) * size_t(t.max_taps) + size_t(k)] = float(w[size_t(k)] / sum);
  }
  return t;
}

}  // namespace

Image resize_cover_reference(const Image& img, int width, int height) {
  const CoverGeometry g = cover_geometry(img, width, height);
  const double sx = double(img.width) / g.scaled_w, sy = double(img.height) / g.scaled_h;
  const double fx = std::max(sx, 1.0), fy = std::max(sy, 1.0);
  Image out{width, height, std::vector<uint8_t>(size_t(width) * size_t(height) * 3)};
  std::vector<double> wx(size_t(img.width)), wy(size_t(img.height));
  for (int oy = 0; oy < height; ++oy) {
    const double cy = (oy + g.y0 + 0.5) * sy;
    double sum_y = 0;
    for (int j = 0; j < img.height; ++j) sum_y += wy[size_t(j)] = triangle((j + 0.5 - cy) / fy);
    for (int ox = 0; ox < width; ++ox) {
      const double cx = (ox + g.x0 + 0.5) * sx;
      double sum_x = 0;
      for (int i = 0; i < img.width; ++i) sum_x += wx[size_t(i)] = triangle((i + 0.5 - cx) / fx);
      for (int c = 0; c < 3; ++c) {
        double v = 0;
        for (int j = 0; j < img.height; ++j)
          for (int i = 0; i < img.width; ++i)
            v += wy[size_t(j)] * wx[size_t(i)] *
                 img.rgb[(size_t(j) * size_t(img.width) + size_t(i)) * 3 + size_t(c)];
        out.rgb[(size_t(oy) * size_t(width) + size_t(ox)) * 3 + size_t(c)] =
            round_to_u8(v / (sum_x * sum_y));
      }
    }
  }
  return out;
}

Image resize_cover(const Image& img, int width, int height) {
  const CoverGeometry g = cover_geometry(img, width, height);
  const AxisTaps tx = make_taps(img.width, g.scaled_w, g.x0, width);
  const AxisTaps ty = make_taps(img.height, g.scaled_h, g.y0, height);

  // Vertical pass first (each output row is a weighted sum of whole input rows, which
  // vectorizes), over only the columns the horizontal taps read: [col_lo, col_hi).
  const int col_lo = tx.first.front();
  const int col_hi = tx.first.back() + tx.size.back();
  const size_t cols = size_t(col_hi - col_lo) * 3;
  const size_t in_row = size_t(img.width) * 3;
  std::vector<float> mid(size_t(height) * cols);
  for (int y = 0; y < height; ++y) {
    const float* w = &ty.weights[size_t(y) * size_t(ty.max_taps)];
    const uint8_t* src = &img.rgb[size_t(ty.first[size_t(y)]) * in_row + size_t(col_lo) * 3];
    float* dst = &mid[size_t(y) * cols];
    std::fill(dst, dst + cols, 0.f);
    for (int k = 0; k < ty.size[size_t(y)]; ++k, src += in_row) {
      const float wk = w[k];
      for (size_t i = 0; i < cols; ++i) dst[i] += wk * float(src[i]);
    }
  }

  // Horizontal pass: per output pixel, a short weighted sum along the intermediate row.
  Image out{width, height, std::vector<uint8_t>(size_t(width) * size_t(height) * 3)};
  for (int y = 0; y < height; ++y) {
    const float* row = &mid[size_t(y) * cols];
    uint8_t* dst = &out.rgb[size_t(y) * size_t(width) * 3];
    for (int x = 0; x < width; ++x) {
      const float* w = &tx.weights[size_t(x) * size_t(tx.max_taps)];
      const float* p = row + size_t(tx.first[size_t(x)] - col_lo) * 3;
      float r = 0, gr = 0, b = 0;
      for (int k = 0; k < tx.size[size_t(x)]; ++k, p += 3) {
        r += w[k] * p[0];
        gr += w[k] * p[1];
        b += w[k] * p[2];
      }
      dst[size_t(x) * 3 + 0] = uint8_t(std::clamp(std::floor(r + 0.5f), 0.f, 255.f));
      dst[size_t(x) * 3 + 1] = uint8_t(std::clamp(std::floor(gr + 0.5f), 0.f, 255.f));
      dst[size_t(x) * 3 + 2] = uint8_t(std::clamp(std::floor(b + 0.5f), 0.f, 255.f));
    }
  }
  return out;
}

}  // namespace sd
