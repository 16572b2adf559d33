// Images: PNG/JPEG decoding of every supported layout, round trips, resize_cover (fast vs the
// reference twin and known values), tensor conversion, and one test per error case.
#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <csetjmp>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "io/image.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

Image random_image(int w, int h, uint32_t seed) {
  Image img{w, h, std::vector<uint8_t>(size_t(w) * h * 3)};
  std::mt19937 rng(seed);
  for (auto& v : img.rgb) v = uint8_t(rng() & 0xff);
  return img;
}

Image constant_image(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  Image img{w, h, std::vector<uint8_t>(size_t(w) * h * 3)};
  for (size_t i = 0; i < img.rgb.size(); i += 3) {
    img.rgb[i] = r;
    img.rgb[i + 1] = g;
    img.rgb[i + 2] = b;
  }
  return img;
}

const uint8_t* pixel(const Image& img, int x, int y) {
  return &img.rgb[(size_t(y) * img.width + x) * 3];
}

// Writes a PNG of any layout with libpng directly; `rows` holds height rows of raw samples
// (16-bit samples big-endian, as PNG stores them). Returns false on a libpng error.
bool write_raw_png(const char* path, int w, int h, int color_type, int depth, int interlace,
                   const std::vector<std::vector<uint8_t>>* rows, const png_color* palette,
                   int palette_size, const uint8_t* trns, int trns_size) {
  FILE* f = std::fopen(path, "wb");
  if (!f) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, depth, color_type, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (palette) png_set_PLTE(png, info, palette, palette_size);
  if (trns) png_set_tRNS(png, info, trns, trns_size, nullptr);
  png_write_info(png, info);
  std::vector<png_bytep> ptrs;
  for (const auto& r : *rows) ptrs.push_back(const_cast<png_bytep>(r.data()));
  png_write_image(png, ptrs.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::fclose(f) == 0;
}

std::vector<uint8_t> jpeg_from_pixels(const std::vector<uint8_t>& px, int w, int h, int format,
                                      int subsamp) {
  tjhandle tj = tjInitCompress();
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  int rc = tjCompress2(tj, px.data(), w, 0, h, format, &buf, &size, subsamp, 100, 0);
  std::vector<uint8_t> out(buf, buf + (rc == 0 ? size : 0));
  tjFree(buf);
  tjDestroy(tj);
  return out;
}

uint32_t crc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

class ImageFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sd_image_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_bytes(const std::string& p, const std::vector<uint8_t>& bytes) {
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  // Expects read_image(p) to fail with a message naming p and containing `what`.
  void expect_read_error(const std::string& p, const std::string& what) {
    try {
      read_image(p);
      FAIL() << "no error reading " << p;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << "'" << what << "' not in: " << msg;
    }
  }
  fs::path dir_;
};

// ---- codecs ------------------------------------------------------------------------------------

TEST_F(ImageFiles, PngRoundTripIsExact) {
  const Image img = random_image(37, 23, 1);
  write_image(path("a.png"), img);
  const Image back = read_image(path("a.png"));
  EXPECT_EQ(back.width, 37);
  EXPECT_EQ(back.height, 23);
  EXPECT_EQ(back.rgb, img.rgb);
  const std::vector<uint8_t> bytes = encode_png(img);
  EXPECT_EQ(decode_image(bytes.data(), bytes.size(), "mem").rgb, img.rgb);
}

TEST_F(ImageFiles, JpegRoundTripWithinTolerance) {
  Image img{64, 48, std::vector<uint8_t>(64 * 48 * 3)};
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 64; ++x) {
      uint8_t* p = &img.rgb[(size_t(y) * 64 + x) * 3];
      p[0] = uint8_t(x * 4);
      p[1] = uint8_t(y * 5);
      p[2] = uint8_t(128 + 100 * std::sin(x * 0.1 + y * 0.05));
    }
  for (const char* name : {"a.jpg", "b.JPEG"}) {
    write_image(path(name), img, 95);
    const Image back = read_image(path(name));
    ASSERT_EQ(back.width, 64);
    ASSERT_EQ(back.height, 48);
    double sum = 0;
    int max_diff = 0;
    for (size_t i = 0; i < img.rgb.size(); ++i) {
      const int d = std::abs(int(back.rgb[i]) - int(img.rgb[i]));
      sum += d;
      max_diff = std::max(max_diff, d);
    }
    EXPECT_LT(sum / double(img.rgb.size()), 1.5) << name;
    EXPECT_LE(max_diff, 12) << name;
  }
  // Sniffed from the bytes, not the name: a JPEG called .png still reads.
  fs::copy_file(path("a.jpg"), path("really_jpeg.png"));
  EXPECT_EQ(read_image(path("really_jpeg.png")).rgb, read_image(path("a.jpg")).rgb);
}

TEST_F(ImageFiles, PngRgbaDropsAlpha) {
  std::vector<std::vector<uint8_t>> rows(2, std::vector<uint8_t>(3 * 4));
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) {
      uint8_t* p = &rows[y][x * 4];
      p[0] = uint8_t(10 + x);
      p[1] = uint8_t(100 + y);
      p[2] = 200;
      p[3] = uint8_t(x * 100);  // alpha 0, 100, 200: the colour must not change
    }
  ASSERT_TRUE(write_raw_png(path("rgba.png").c_str(), 3, 2, PNG_COLOR_TYPE_RGBA, 8,
                            PNG_INTERLACE_NONE, &rows, nullptr, 0, nullptr, 0));
  const Image img = read_image(path("rgba.png"));
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x) {
      EXPECT_EQ(pixel(img, x, y)[0], 10 + x);
      EXPECT_EQ(pixel(img, x, y)[1], 100 + y);
      EXPECT_EQ(pixel(img, x, y)[2], 200);
    }
}

TEST_F(ImageFiles, PngGrayLayoutsAreReplicated) {
  // 8-bit gray, 8-bit gray + alpha, 1-bit gray (0 -> 0, 1 -> 255).
  std::vector<std::vector<uint8_t>> gray = {{0, 77, 255, 13}};
  std::vector<std::vector<uint8_t>> gray_alpha = {{0, 9, 77, 0, 255, 128, 13, 255}};
  std::vector<std::vector<uint8_t>> bits = {{0b10100000}};
  ASSERT_TRUE(write_raw_png(path("g.png").c_str(), 4, 1, PNG_COLOR_TYPE_GRAY, 8, 0, &gray, nullptr,
                            0, nullptr, 0));
  ASSERT_TRUE(write_raw_png(path("ga.png").c_str(), 4, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0,
                            &gray_alpha, nullptr, 0, nullptr, 0));
  ASSERT_TRUE(write_raw_png(path("g1.png").c_str(), 4, 1, PNG_COLOR_TYPE_GRAY, 1, 0, &bits, nullptr,
                            0, nullptr, 0));
  const uint8_t want[3][4] = {{0, 77, 255, 13}, {0, 77, 255, 13}, {255, 0, 255, 0}};
  int k = 0;
  for (const char* name : {"g.png", "ga.png", "g1.png"}) {
    const Image img = read_image(path(name));
    ASSERT_EQ(img.width, 4) << name;
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(pixel(img, x, 0)[c], want[k][x]) << name << " x=" << x;
    ++k;
  }
}

TEST_F(ImageFiles, Png16BitIsScaledWithRounding) {
  const uint16_t samples[6] = {0x0000, 0xffff, 0x8080, 0x7f7f, 0x80ff, 0x0081};
  std::vector<std::vector<uint8_t>> rgb(1), gray_alpha(1);
  for (uint16_t v : samples) {  // one RGB pixel per sample value, R = G = B
    for (int c = 0; c < 3; ++c) rgb[0].insert(rgb[0].end(), {uint8_t(v >> 8), uint8_t(v)});
    gray_alpha[0].insert(gray_alpha[0].end(), {uint8_t(v >> 8), uint8_t(v), 0x12, 0x34});
  }
  ASSERT_TRUE(write_raw_png(path("rgb16.png").c_str(), 6, 1, PNG_COLOR_TYPE_RGB, 16, 0, &rgb,
                            nullptr, 0, nullptr, 0));
  ASSERT_TRUE(write_raw_png(path("ga16.png").c_str(), 6, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0,
                            &gray_alpha, nullptr, 0, nullptr, 0));
  for (const char* name : {"rgb16.png", "ga16.png"}) {
    const Image img = read_image(path(name));
    ASSERT_EQ(img.width, 6) << name;
    for (int x = 0; x < 6; ++x)
      for (int c = 0; c < 3; ++c)
        EXPECT_EQ(pixel(img, x, 0)[c], std::lround(samples[x] * 255.0 / 65535.0))
            << name << " sample " << samples[x];
  }
}

TEST_F(ImageFiles, PngPaletteWithTransparencyAndInterlaced) {
  const png_color palette[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 8, 7}};
  const uint8_t trns[4] = {0, 128, 255, 255};
  std::vector<std::vector<uint8_t>> rows = {{0b00011011}};  // indices 0 1 2 3, 2 bits each
  ASSERT_TRUE(write_raw_png(path("pal.png").c_str(), 4, 1, PNG_COLOR_TYPE_PALETTE, 2, 0, &rows,
                            palette, 4, trns, 4));
  const Image img = read_image(path("pal.png"));
  ASSERT_EQ(img.width, 4);
  for (int x = 0; x < 4; ++x) {
    EXPECT_EQ(pixel(img, x, 0)[0], palette[x].red);
    EXPECT_EQ(pixel(img, x, 0)[1], palette[x].green);
    EXPECT_EQ(pixel(img, x, 0)[2], palette[x].blue);
  }
  // Adam7-interlaced RGB decodes to the same pixels as the source.
  const Image src = random_image(13, 11, 7);
  std::vector<std::vector<uint8_t>> rgb_rows;
  for (int y = 0; y < 11; ++y)
    rgb_rows.emplace_back(src.rgb.begin() + y * 39, src.rgb.begin() + (y + 1) * 39);
  ASSERT_TRUE(write_raw_png(path("adam7.png").c_str(), 13, 11, PNG_COLOR_TYPE_RGB, 8,
                            PNG_INTERLACE_ADAM7, &rgb_rows, nullptr, 0, nullptr, 0));
  EXPECT_EQ(read_image(path("adam7.png")).rgb, src.rgb);
}

TEST_F(ImageFiles, JpegGrayscaleAndCmyk) {
  std::vector<uint8_t> gray(16 * 8);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = uint8_t(i % 16 * 16);
  const std::vector<uint8_t> gj = jpeg_from_pixels(gray, 16, 8, TJPF_GRAY, TJSAMP_GRAY);
  ASSERT_FALSE(gj.empty());
  const Image g = decode_image(gj.data(), gj.size(), "gray.jpg");
  ASSERT_EQ(g.width, 16);
  ASSERT_EQ(g.height, 8);
  for (size_t i = 0; i < gray.size(); ++i) {
    EXPECT_EQ(g.rgb[i * 3], g.rgb[i * 3 + 1]);
    EXPECT_EQ(g.rgb[i * 3], g.rgb[i * 3 + 2]);
    EXPECT_NEAR(g.rgb[i * 3], gray[i], 4) << i;
  }
  // Adobe-style (inverted) CMYK: R = C * K / 255 ... = (200, 100, 50) * 204 / 255.
  std::vector<uint8_t> cmyk;
  for (int i = 0; i < 16 * 16; ++i) cmyk.insert(cmyk.end(), {200, 100, 50, 204});
  const std::vector<uint8_t> cj = jpeg_from_pixels(cmyk, 16, 16, TJPF_CMYK, TJSAMP_444);
  ASSERT_FALSE(cj.empty());
  const Image c = decode_image(cj.data(), cj.size(), "cmyk.jpg");
  ASSERT_EQ(c.width, 16);
  for (int i = 0; i < 16 * 16; ++i) {
    EXPECT_NEAR(c.rgb[i * 3 + 0], 160, 3) << i;
    EXPECT_NEAR(c.rgb[i * 3 + 1], 80, 3) << i;
    EXPECT_NEAR(c.rgb[i * 3 + 2], 40, 3) << i;
  }
}

TEST(ImageRead, RealPortrait) {
  const Image img = read_image(SD_DATA_DIR "/images/portrait.png");  // 879x879 RGBA PNG
  EXPECT_EQ(img.width, 879);
  EXPECT_EQ(img.height, 879);
  ASSERT_EQ(img.rgb.size(), 879u * 879u * 3u);
  double mean = 0;
  for (uint8_t v : img.rgb) mean += v;
  mean /= double(img.rgb.size());
  EXPECT_GT(mean, 20.0);  // a real photo, not black or white
  EXPECT_LT(mean, 235.0);
  const Image small = resize_cover(img, 512, 512);
  EXPECT_EQ(small.width, 512);
  EXPECT_EQ(small.height, 512);
}

// ---- errors ------------------------------------------------------------------------------------

TEST_F(ImageFiles, ErrorMissingFile) {
  expect_read_error(path("absent.png"), "No such file");
}

TEST_F(ImageFiles, ErrorNotAnImage) {
  write_bytes(path("text.png"), {'h', 'e', 'l', 'l', 'o'});
  expect_read_error(path("text.png"), "not a PNG or JPEG");
  write_bytes(path("empty.jpg"), {});
  expect_read_error(path("empty.jpg"), "empty file");
}

TEST_F(ImageFiles, ErrorTruncatedImage) {
  const Image img = random_image(40, 30, 3);
  std::vector<uint8_t> png = encode_png(img);
  png.resize(png.size() / 2);
  write_bytes(path("cut.png"), png);
  expect_read_error(path("cut.png"), "truncated PNG");
  std::vector<uint8_t> jpg = encode_jpeg(img);
  jpg.resize(jpg.size() / 2);
  write_bytes(path("cut.jpg"), jpg);
  expect_read_error(path("cut.jpg"), "truncated JPEG");
}

TEST_F(ImageFiles, ErrorZeroSizedImage) {
  // A PNG whose IHDR (with a valid CRC) says width 0.
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};
  const uint8_t ihdr[17] = {'I', 'H', 'D', 'R', 0, 0, 0, 0, 0, 0, 0, 4, 8, 2, 0, 0, 0};
  png.insert(png.end(), ihdr, ihdr + 17);
  const uint32_t crc = crc32(ihdr, 17);
  png.insert(png.end(), {uint8_t(crc >> 24), uint8_t(crc >> 16), uint8_t(crc >> 8), uint8_t(crc)});
  write_bytes(path("zero.png"), png);
  expect_read_error(path("zero.png"), "zero-sized");
  // A JPEG whose SOF0 frame header says height 0 and width 0.
  std::vector<uint8_t> jpg = encode_jpeg(random_image(8, 8, 4));
  for (size_t i = 0; i + 9 < jpg.size(); ++i)
    if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) std::fill(&jpg[i + 5], &jpg[i + 9], 0);
  write_bytes(path("zero.jpg"), jpg);
  expect_read_error(path("zero.jpg"), "zero-sized");
  EXPECT_THROW(encode_png(Image{}), Error);
  EXPECT_THROW(write_image(path("empty.jpg"), Image{}), Error);
}

TEST_F(ImageFiles, ErrorUnwritablePath) {
  const std::string p = path("no_such_dir/out.png");
  try {
    write_image(p, random_image(4, 4, 5));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_F(ImageFiles, ErrorUnknownOutputExtension) {
  for (const char* name : {"out.bmp", "out", "dir.png/out"}) {
    const std::string p = path(name);
    try {
      write_image(p, random_image(4, 4, 6));
      FAIL() << "no error for " << p;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      EXPECT_NE(msg.find("unknown extension"), std::string::npos) << msg;
    }
    EXPECT_FALSE(fs::exists(p));
  }
}

// ---- resize_cover ------------------------------------------------------------------------------

TEST(ImageResize, FastMatchesReference) {
  struct Case {
    int w, h, tw, th;
  };
  // Shrink, upscale, mixed, extreme aspect, identity, 1x1 source, odd sizes.
  const Case cases[] = {{37, 23, 16, 16}, {23, 37, 20, 10}, {10, 10, 25, 17},
                        {50, 8, 7, 7},    {1, 1, 3, 2},     {64, 64, 64, 64},
                        {9, 31, 31, 9},   {100, 3, 1, 1},   {17, 17, 5, 13}};
  uint32_t seed = 10;
  for (const Case& c : cases) {
    const Image src = random_image(c.w, c.h, seed++);
    const Image fast = resize_cover(src, c.tw, c.th);
    const Image ref = resize_cover_reference(src, c.tw, c.th);
    ASSERT_EQ(fast.width, c.tw);
    ASSERT_EQ(fast.height, c.th);
    ASSERT_EQ(fast.rgb.size(), ref.rgb.size());
    size_t exact = 0;
    for (size_t i = 0; i < ref.rgb.size(); ++i) {
      ASSERT_LE(std::abs(int(fast.rgb[i]) - int(ref.rgb[i])), 1)
          << c.w << "x" << c.h << " -> " << c.tw << "x" << c.th << " at " << i;
      exact += fast.rgb[i] == ref.rgb[i];
    }
    // Upscaling by 2.5 puts many samples exactly on .5, where float and double may round apart.
    EXPECT_GE(double(exact), 0.97 * double(ref.rgb.size())) << c.w << "x" << c.h;
  }
}

TEST(ImageResize, KnownValues) {
  // A constant image stays constant, shrinking or growing, any aspect.
  const std::array<std::array<int, 4>, 3> sizes = {{{30, 20, 7, 9}, {5, 9, 40, 11}, {1, 1, 2, 2}}};
  for (auto [w, h, tw, th] : sizes) {
    const Image out = resize_cover(constant_image(w, h, 12, 200, 255), tw, th);
    for (int y = 0; y < th; ++y)
      for (int x = 0; x < tw; ++x) {
        ASSERT_EQ(pixel(out, x, y)[0], 12);
        ASSERT_EQ(pixel(out, x, y)[1], 200);
        ASSERT_EQ(pixel(out, x, y)[2], 255);
      }
  }
  // Same size: identity.
  const Image src = random_image(11, 7, 20);
  EXPECT_EQ(resize_cover(src, 11, 7).rgb, src.rgb);
  // Cover + centre crop without scaling: 4x2 -> 2x2 keeps columns 1 and 2.
  Image cols{4, 2, std::vector<uint8_t>(4 * 2 * 3)};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) cols.rgb[(size_t(y) * 4 + x) * 3] = uint8_t(10 * (x + 1));
  const Image crop = resize_cover(cols, 2, 2);
  EXPECT_EQ(pixel(crop, 0, 0)[0], 20);
  EXPECT_EQ(pixel(crop, 1, 1)[0], 30);
  // Antialiasing: a 4x shrink of one bright column in four averages it (255 / 4 -> 64) where
  // point-sampled bilinear would see only the dark columns between.
  Image lines = constant_image(64, 4, 0, 0, 0);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 64; x += 4) lines.rgb[(size_t(y) * 64 + x) * 3 + 1] = 255;
  const Image small = resize_cover(lines, 16, 1);
  for (int x = 1; x < 15; ++x) EXPECT_EQ(pixel(small, x, 0)[1], 64) << x;
}

TEST(ImageResize, MatchesPilBilinearOnThePortrait) {
  // Fixture made with Pillow 13.0 (tools/.venv):
  //   src = Image.open("input.png").convert("RGB")        # 879x879
  //   src.resize((96, 96), Image.BILINEAR).crop((0, 16, 96, 80)).save(...)
  // PIL computes in fixed point and rounds between its two passes, so allow 1 per sample.
  const Image src = read_image(SD_DATA_DIR "/images/portrait.png");
  const Image want = read_image(SD_FIXTURE_DIR "/image/input_cover_96x64_pil_bilinear.png");
  const Image got = resize_cover(src, 96, 64);
  ASSERT_EQ(got.width, want.width);
  ASSERT_EQ(got.height, want.height);
  double sum = 0;
  for (size_t i = 0; i < want.rgb.size(); ++i) {
    const int d = std::abs(int(got.rgb[i]) - int(want.rgb[i]));
    ASSERT_LE(d, 1) << "sample " << i;
    sum += d;
  }
  EXPECT_LT(sum / double(want.rgb.size()), 0.2);
}

TEST(ImageResize, RejectsBadSizes) {
  EXPECT_THROW(resize_cover(random_image(4, 4, 1), 0, 4), Error);
  EXPECT_THROW(resize_cover(Image{}, 4, 4), Error);
}

// ---- tensors -----------------------------------------------------------------------------------

TEST(ImageTensor, ValuesAndRoundTrip) {
  Image img{256, 1, std::vector<uint8_t>(256 * 3)};
  for (int i = 0; i < 256 * 3; ++i) img.rgb[i] = uint8_t(i / 3);
  const Tensor t = image_to_tensor(img);
  ASSERT_EQ(t.shape(), (Shape{1, 1, 256, 3}));
  const float* p = t.data_as<float>();
  EXPECT_EQ(p[0], -1.f);
  EXPECT_EQ(p[255 * 3], 1.f);
  EXPECT_FLOAT_EQ(p[100 * 3 + 1], 100 / 127.5f - 1.f);
  EXPECT_EQ(tensor_to_image(t).rgb, img.rgb);  // every value survives the round trip
  EXPECT_EQ(tensor_to_image(t.reshape({1, 256, 3})).rgb, img.rgb);
  EXPECT_EQ(tensor_to_image(t.to_host_dtype(DType::BF16)).width, 256);
}

TEST(ImageTensor, ClampsAndRoundsHalfUp) {
  Tensor t = Tensor::host({1, 1, 2, 3}, DType::F32);
  float* p = t.data_as<float>();
  const float in[6] = {-3.f, 2.f, 0.f, std::nanf(""), 0.5f, -1.f};
  std::copy(in, in + 6, p);
  const Image img = tensor_to_image(t);
  EXPECT_EQ(img.rgb[0], 0);    // clamped below
  EXPECT_EQ(img.rgb[1], 255);  // clamped above
  EXPECT_EQ(img.rgb[2], 128);  // 127.5 rounds up
  EXPECT_EQ(img.rgb[3], 0);    // NaN
  EXPECT_EQ(img.rgb[4], 191);  // 191.25
  EXPECT_EQ(img.rgb[5], 0);
  EXPECT_THROW(tensor_to_image(Tensor::host({1, 2, 2, 4}, DType::F32)), Error);
  EXPECT_THROW(tensor_to_image(Tensor::host({2, 2, 2, 3}, DType::F32)), Error);
}

}  // namespace
}  // namespace sd
