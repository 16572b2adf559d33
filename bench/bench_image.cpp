// Image IO on the real portrait (879x879 RGBA PNG): decode, resize_cover to 512x512, encode
// JPEG and PNG (and decode the JPEG, as a camera frame would be).
#include <cstdio>
#include <fstream>
#include <iterator>

#include "bench.h"
#include "core/error.h"
#include "io/image.h"

namespace {

void report(const char* what, const sd::bench::Stats& s) {
  std::printf("  %-34s min %8.2f ms  median %8.2f ms  (%d runs)\n", what, s.min_ms, s.median_ms,
              s.runs);
}

}  // namespace

SD_BENCH("image") {
  const char* path = SD_DATA_DIR "/images/portrait.png";
  std::ifstream f(path, std::ios::binary);
  SD_CHECK(f, "bench image: cannot open ", path);
  const std::vector<uint8_t> png(std::istreambuf_iterator<char>(f), {});
  sd::Image img;
  report("decode PNG 879x879 (from memory)",
         sd::bench::time_it([&] { img = sd::decode_image(png.data(), png.size(), path); }, 7));
  sd::Image small;
  report("resize_cover -> 512x512",
         sd::bench::time_it([&] { small = sd::resize_cover(img, 512, 512); }, 11));
  std::vector<uint8_t> bytes;
  report("encode JPEG 512x512 q92",
         sd::bench::time_it([&] { bytes = sd::encode_jpeg(small, 92); }, 11));
  std::printf("  (JPEG %zu bytes)\n", bytes.size());
  const std::vector<uint8_t> jpeg = bytes;
  report("decode JPEG 512x512",
         sd::bench::time_it([&] { small = sd::decode_image(jpeg.data(), jpeg.size(), "j"); }, 11));
  report("encode PNG 512x512", sd::bench::time_it([&] { bytes = sd::encode_png(small); }, 7));
  std::printf("  (PNG %zu bytes)\n", bytes.size());
}
