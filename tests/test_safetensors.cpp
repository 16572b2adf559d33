// safetensors: writer/reader round trips and one test per class of corrupt input. The corrupt
// inputs go through SafetensorsFile::from_bytes, the same entry point the fuzzer drives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

namespace sd {
namespace {

namespace fs = std::filesystem;

// A file image: 8-byte little-endian length, the header text, `data_len` data bytes.
std::string file_image(const std::string& header, size_t data_len) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = char(n >> (8 * i));
  out += header;
  out.append(data_len, '\x01');
  return out;
}

// Parses `bytes` expecting an sd::Error whose message contains every one of `parts`.
void expect_error(const std::string& bytes, std::initializer_list<const char*> parts) {
  try {
    SafetensorsFile::from_bytes(bytes, "bad.safetensors");
    FAIL() << "no error; expected one containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const char* p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

Tensor random_tensor(const Shape& shape, DType dtype, uint32_t seed) {
  Tensor f = Tensor::host(shape, DType::F32);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  float* p = f.data_as<float>();
  for (int64_t i = 0; i < f.numel(); ++i) p[i] = dist(rng);
  return f.to_host_dtype(dtype);
}

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sd_safetensors_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SafetensorsFileTest, RoundTripAllDtypesAndMetadata) {
  std::map<std::string, Tensor> tensors = {{"b.f32", random_tensor({3, 5, 7}, DType::F32, 1)},
                                           {"a.f16", random_tensor({2, 9}, DType::F16, 2)},
                                           {"c.bf16", random_tensor({11}, DType::BF16, 3)},
                                           {"d.scalar", random_tensor({}, DType::F32, 4)},
                                           {"e.empty", random_tensor({0, 4}, DType::F16, 5)}};
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "ünïcode \"quoted\""}};
  const std::string path = (dir_ / "round.safetensors").string();
  write_safetensors(path, tensors, meta);

  // The header length is padded so the data area starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  EXPECT_EQ(n % 8, 0u);

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata(), meta);
  ASSERT_EQ(f->entries().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f->contains(name)) << name;
    const SafetensorsEntry& e = f->entry(name);
    EXPECT_EQ(e.shape, t.shape()) << name;
    Tensor v = f->view(name);
    EXPECT_EQ(v.dtype(), t.dtype()) << name;
    EXPECT_EQ(std::memcmp(v.data(), t.data(), t.nbytes()), 0) << name;
    // load() converts to every dtype exactly like core convert() does.
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      Tensor got = f->load(name, dt, t.shape());
      Tensor want = t.to_host_dtype(dt);
      EXPECT_EQ(got.dtype(), dt);
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.nbytes()), 0)
          << name << " as " << dtype_name(dt);
    }
  }
  // Entries come back in name order; the writer put the f32 tensors first in the data area so
  // that every tensor is aligned to its element size.
  EXPECT_EQ(f->entries().front().name, "a.f16");
  EXPECT_EQ(f->entries().back().name, "e.empty");
  EXPECT_EQ(f->entry("b.f32").begin, 0u);
  for (const SafetensorsEntry& e : f->entries())
    EXPECT_EQ(e.begin % (e.dtype == "F32" ? 4 : 2), 0u) << e.name;
  // Only the final file is left behind: the temporary was renamed onto it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

float element(const Tensor& t, int64_t i) {
  float f;
  convert(static_cast<const uint8_t*>(t.data()) + i * dtype_size(t.dtype()), t.dtype(), &f,
          DType::F32, 1);
  return f;
}

TEST_F(SafetensorsFileTest, LargeLoadsMatchScalarConversion) {
  // Long enough for the parallel chunked path, odd length for the vector-loop tails. The bit
  // patterns sweep every class: zeros, subnormals, normals, rounding ties, infinities, NaNs.
  const int64_t n = 100003;
  for (DType src : {DType::F32, DType::F16, DType::BF16}) {
    Tensor t = Tensor::host({n}, src);
    for (int64_t i = 0; i < n; ++i) {
      if (src == DType::F32)
        static_cast<uint32_t*>(t.data())[i] = uint32_t(i) * 2654435761u;
      else
        static_cast<uint16_t*>(t.data())[i] = uint16_t(uint32_t(i) * 7919u);
    }
    const std::string path = (dir_ / "big.safetensors").string();
    write_safetensors(path, {{"x", t}});
    auto f = SafetensorsFile::open(path);
    for (DType dst : {DType::F32, DType::F16, DType::BF16}) {
      Tensor got = f->load("x", dst);
      Tensor want = t.to_host_dtype(dst);  // core convert(), element by element
      for (int64_t i = 0; i < n; ++i) {
        const float w = element(want, i), g = element(got, i);
        if (std::isnan(w)) {
          ASSERT_TRUE(std::isnan(g)) << dtype_name(src) << "->" << dtype_name(dst) << " at " << i;
        } else {
          ASSERT_EQ(std::memcmp(static_cast<uint8_t*>(got.data()) + i * dtype_size(dst),
                                static_cast<uint8_t*>(want.data()) + i * dtype_size(dst),
                                dtype_size(dst)),
                    0)
              << dtype_name(src) << "->" << dtype_name(dst) << " at " << i << ": " << g << " vs "
              << w;
        }
      }
    }
  }
}

TEST_F(SafetensorsFileTest, UnwritablePathIsNamed) {
  const std::string path = (dir_ / "no_such_dir" / "x.safetensors").string();
  try {
    write_safetensors(path, {{"x", Tensor::host({2}, DType::F32)}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

// A model stays open for LoRA re-reads after its pages are released. A file truncated or
// rewritten in place meanwhile gives an error naming it (a truncated mapping would raise
// SIGBUS); a file replaced by rename keeps serving the old contents.
TEST_F(SafetensorsFileTest, ChangedOnDiskAfterReleaseIsAnErrorNotACrash) {
  const std::string path = (dir_ / "model.safetensors").string();
  const Tensor w = random_tensor({64, 64}, DType::F32, 9);
  write_safetensors(path, {{"w", w}, {"v", random_tensor({8}, DType::F16, 10)}});
  auto f = SafetensorsFile::open(path);
  f->release_resident();
  auto same = [&](const Tensor& t) {
    return std::memcmp(t.data(), w.data(), size_t(w.numel()) * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(f->load("w", DType::F32)));
  EXPECT_THROW(f->view("w"), Error);

  // Replaced by rename (what write_safetensors and downloads do): the old file still reads.
  write_safetensors(path, {{"w", random_tensor({64, 64}, DType::F32, 11)}});
  EXPECT_TRUE(same(f->load("w", DType::F32)));

  // Rewritten in place with the same size: an error, not silently different weights.
  auto g = SafetensorsFile::open(path);
  g->release_resident();
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(-4, std::ios::end);
    io.write("\x01\x02\x03\x04", 4);
  }
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(2));
  try {
    g->load("w", DType::F32);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("changed on disk"), std::string::npos) << e.what();
  }

  // Truncated in place: an error naming the file and the sizes.
  auto h = SafetensorsFile::open(path);
  h->release_resident();
  const auto size = fs::file_size(path);
  fs::resize_file(path, size / 2);
  try {
    h->load("w", DType::F32);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(size / 2) + " now"), std::string::npos)
        << e.what();
  }
}

TEST_F(SafetensorsFileTest, MissingFileIsNamed) {
  const std::string path = (dir_ / "absent.safetensors").string();
  try {
    SafetensorsFile::open(path);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(SafetensorsLoad, MissingTensorNamesIt) {
  auto f = SafetensorsFile::from_bytes(
      file_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8), "m.st");
  try {
    f->load("unet.missing.weight", DType::F32);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("unet.missing.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("m.st"), std::string::npos) << msg;
  }
  EXPECT_THROW(f->entry("nope"), Error);
  EXPECT_THROW(f->view("nope"), Error);
}

TEST(SafetensorsLoad, WrongExpectedShapeNamesBothShapes) {
  auto f = SafetensorsFile::from_bytes(
      file_image(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", 24), "m.st");
  EXPECT_NO_THROW(f->load("w", DType::F32, Shape{2, 3}));
  try {
    f->load("w", DType::F32, Shape{3, 2});
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
  }
}

TEST(SafetensorsLoad, NonFloatDtypeCannotBeLoaded) {
  auto f = SafetensorsFile::from_bytes(
      file_image(R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16), "m.st");
  EXPECT_EQ(f->entry("ids").dtype, "I64");
  EXPECT_THROW(f->load("ids", DType::F32), Error);
  EXPECT_THROW(f->view("ids"), Error);
}

TEST(SafetensorsLoad, UnalignedDataLoadsButCannotBeViewed) {
  // A 57-byte header puts the data area at offset 65: valid, but F32 data is misaligned.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append(57 - header.size(), ' ');
  std::string img = file_image(header, 0);
  const float vals[2] = {1.5f, -2.25f};
  img.append(reinterpret_cast<const char*>(vals), 8);
  auto f = SafetensorsFile::from_bytes(img, "u.st");
  Tensor t = f->load("w", DType::F32);
  EXPECT_EQ(t.data_as<float>()[0], 1.5f);
  EXPECT_EQ(t.data_as<float>()[1], -2.25f);
  try {
    f->view("w");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not aligned"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsLoad, EmptyFileWithNoTensorsIsValid) {
  auto f = SafetensorsFile::from_bytes(file_image("{}      ", 0), "e.st");
  EXPECT_TRUE(f->entries().empty());
  EXPECT_TRUE(f->metadata().empty());
}

// ---- corrupt inputs: one test per class -------------------------------------------------------

const char* kGood = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(SafetensorsCorrupt, TruncatedFile) {
  expect_error(std::string("\x10\0\0", 3), {"truncated"});
  // A valid file cut inside its data area: the tensor now runs past the end.
  std::string good = file_image(kGood, 8);
  expect_error(good.substr(0, good.size() - 3), {"'a'", "past the end"});
}

TEST(SafetensorsCorrupt, HeaderLengthPastEof) {
  std::string img = file_image(kGood, 8);
  img[0] = char(img.size());  // header claims more bytes than the file has
  expect_error(img, {"header length", "past the end"});
}

TEST(SafetensorsCorrupt, HugeHeaderLength) {
  std::string img(8, '\xff');
  img += "{}";
  expect_error(img, {"header length", "exceeds the limit"});
}

TEST(SafetensorsCorrupt, InvalidJson) {
  expect_error(file_image(R"({"a":{"dtype":"F32",)", 0), {"not valid JSON"});
  expect_error(file_image("{\"a\xff\":1}", 0), {"not valid JSON"});  // invalid UTF-8
}

TEST(SafetensorsCorrupt, NonObjectJson) {
  expect_error(file_image("[1,2,3]", 0), {"not an object"});
  expect_error(file_image(R"({"a":[1,2]})", 0), {"'a'", "must be an object"});
}

TEST(SafetensorsCorrupt, DuplicateKey) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          8),
               {"duplicate key 'a'"});
}

TEST(SafetensorsCorrupt, UnknownDtype) {
  expect_error(file_image(R"({"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8),
               {"'a'", "unknown dtype 'F31'"});
}

TEST(SafetensorsCorrupt, MissingOrExtraField) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2]}})", 8), {"'a'", "data_offsets"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
               {"'a'", "unexpected field 'x'"});
}

TEST(SafetensorsCorrupt, ShapeBytesMismatch) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               {"'a'", "[3]", "hold 8"});
  // numel overflowing 64 bits is a mismatch too, not a wrap-around.
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],)"
                          R"("data_offsets":[0,0]}})",
                          0),
               {"'a'", "overflowing"});
}

TEST(SafetensorsCorrupt, OffsetsPastEnd) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8),
               {"'a'", "past the end of the data area"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
               {"'a'", "begin after end"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", 8),
               {"'a'", "data_offsets"});
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          12),
               {"'b'", "overlaps tensor 'a'"});
}

TEST(SafetensorsCorrupt, HoleInDataArea) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          12),
               {"hole", "[4, 8)", "'b'"});
  expect_error(file_image(kGood, 12), {"hole", "[8, 12)"});  // trailing unused bytes
}

TEST(SafetensorsCorrupt, BadMetadata) {
  expect_error(file_image(R"({"__metadata__":{"k":1}})", 0), {"__metadata__", "'k'", "string"});
  expect_error(file_image(R"({"__metadata__":"x"})", 0), {"__metadata__", "object"});
}

TEST(SafetensorsCorrupt, NegativeOrNonIntegerShape) {
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
               {"'a'", "non-negative integers"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
               {"'a'", "non-negative integers"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8),
               {"'a'", "shape must be an array"});
  expect_error(file_image(R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1,2],)"
                          R"("data_offsets":[0,8]}})",
                          8),
               {"'a'", "rank 7"});
}

}  // namespace
}  // namespace sd
