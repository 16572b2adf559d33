// safetensors reader (mmap + strict validation) and writer. See safetensors.h for the format.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "io/json_config.h"
#include "io/output_file.h"

namespace sd {

namespace {

using json = nlohmann::json;

// Bytes per element of every dtype the format defines; 0 for unknown names.
size_t file_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"F64", 8},     {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1},
      {"F8_E5M2", 1}, {"I64", 8}, {"I32", 4}, {"I16", 2},  {"I8", 1},
      {"U64", 8},     {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

// The float dtypes a tensor can be viewed or loaded as.
bool float_dtype(const std::string& dtype, DType* out) {
  if (dtype == "F32")
    *out = DType::F32;
  else if (dtype == "F16")
    *out = DType::F16;
  else if (dtype == "BF16")
    *out = DType::BF16;
  else
    return false;
  return true;
}

const char* file_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
  }
  return "?";
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- fast dtype conversion for large tensors --------------------------------------------------

// f16 -> f32 for n elements: F16C when the build has it, a 64K-entry table otherwise.
void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
  }
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
#else
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f16_to_float_slow(uint16_t(h));
    return t;
  }();
  for (; i < n; ++i) dst[i] = table[src[i]];
#endif
  for (; i < n; ++i) dst[i] = f16_to_float_slow(src[i]);
}

// f32 -> bf16 with exactly the rounding of to_bf16() (nearest-even, NaN kept quiet), written
// branch-free so that the compiler vectorizes it.
void f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, src + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (u >> 16) | 0x40u;
    dst[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
}

void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t u = uint32_t(src[i]) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

// Converts one chunk: vectorized loops for the paths model loading uses (anything to f32,
// f32/f16 to bf16), core convert() for the rest (to f16).
void convert_chunk(const uint8_t* s, DType st, uint8_t* d, DType dt, size_t len) {
  const auto* s16 = reinterpret_cast<const uint16_t*>(s);
  if (st == DType::F16 && dt == DType::F32) {
    f16_to_f32(s16, reinterpret_cast<float*>(d), len);
  } else if (st == DType::BF16 && dt == DType::F32) {
    bf16_to_f32(s16, reinterpret_cast<float*>(d), len);
  } else if (st == DType::F32 && dt == DType::BF16) {
    f32_to_bf16(reinterpret_cast<const float*>(s), reinterpret_cast<uint16_t*>(d), len);
  } else if (st == DType::F16 && dt == DType::BF16) {
    float tmp[2048];
    for (size_t i = 0; i < len; i += 2048) {
      const size_t m = std::min<size_t>(2048, len - i);
      f16_to_f32(s16 + i, tmp, m);
      f32_to_bf16(tmp, reinterpret_cast<uint16_t*>(d) + i, m);
    }
  } else {
    convert(s, st, d, dt, len);
  }
}

// Converts n elements in parallel chunks.
void convert_parallel(const void* src, DType st, void* dst, DType dt, size_t n) {
  constexpr size_t kChunk = 1 << 14;
  const size_t chunks = (n + kChunk - 1) / kChunk;
  const size_t ss = dtype_size(st), ds = dtype_size(dt);
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (size_t c = 0; c < chunks; ++c) {
    const size_t begin = c * kChunk, len = std::min(kChunk, n - begin);
    const auto* s = static_cast<const uint8_t*>(src) + begin * ss;
    auto* d = static_cast<uint8_t*>(dst) + begin * ds;
    convert_chunk(s, st, d, dt, len);
  }
}

// Asks for transparent huge pages on a large fresh destination buffer before it is first
// written: first-touch page faults, not the conversion, bound load() otherwise (measured 0.6 vs
// 1.4 GB/s on the 2-core VM). Only a hint; failures are ignored.
void advise_huge_pages(void* p, size_t bytes) {
  constexpr uintptr_t kPage = 4096;
  if (bytes < (size_t(8) << 20)) return;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kPage - 1) & ~(kPage - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kPage - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

// ---- reading -----------------------------------------------------------------------------------

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open safetensors file '", path, "': ", errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string err = errno_text();
    ::close(fd);
    fail("cannot stat safetensors file '", path, "': ", err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("safetensors file '", path, "' is not a regular file");
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  f->fd_ = fd;  // closed by the destructor, also when parse() throws
  f->mtime_ns_ = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) fail("cannot map safetensors file '", path, "': ", errno_text());
    f->map_ = p;
    f->base_ = static_cast<const uint8_t*>(p);
  }
  f->parse(path);
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_bytes(std::string_view bytes,
                                                             const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->owned_.assign(bytes.data(), bytes.size());
  f->base_ = reinterpret_cast<const uint8_t*>(f->owned_.data());
  f->size_ = f->owned_.size();
  f->parse(name);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsFile::release_resident() const {
  if (!map_) return;
  released_ = true;
  ::madvise(map_, size_, MADV_DONTNEED);
}

void SafetensorsFile::read_checked(size_t offset, size_t n, void* dst,
                                   const std::string& what) const {
  const std::string where = "safetensors file '" + path_ + "' (" + what + "): ";
  struct stat st;
  SD_CHECK(::fstat(fd_, &st) == 0, where, "cannot stat: ", errno_text());
  const int64_t mtime = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  SD_CHECK(size_t(st.st_size) == size_ && mtime == mtime_ns_, where,
           "the file changed on disk after the model was loaded (", size_, " bytes then, ",
           st.st_size, " now", mtime == mtime_ns_ ? "" : ", modified since",
           "); load the model again");
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, out + done, n - done, off_t(offset + done));
    if (got < 0 && errno == EINTR) continue;
    SD_CHECK(got > 0, where, "read ", done, " of ", n, " bytes at offset ", offset,
             got < 0 ? ": " + errno_text() : std::string(": the file is shorter than it was"));
    done += size_t(got);
  }
}

void SafetensorsFile::parse(const std::string& name) {
  const std::string where = "safetensors file '" + name + "': ";
  SD_CHECK(size_ >= 8, where, "truncated: ", size_,
           " bytes, too short for the 8-byte header length");
  const uint64_t header_len = read_le64(base_);
  SD_CHECK(header_len <= kMaxHeaderBytes, where, "header length ", header_len,
           " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  SD_CHECK(header_len <= size_ - 8, where, "header length ", header_len,
           " runs past the end of the file (", size_ - 8, " bytes after the length field)");
  data_start_ = 8 + size_t(header_len);
  const size_t data_len = size_ - data_start_;
  const char* hbegin = reinterpret_cast<const char*>(base_ + 8);

  std::string duplicate;
  json header = parse_json_rejecting_duplicates(hbegin, hbegin + header_len, &duplicate);
  SD_CHECK(!header.is_discarded(), where, "header is not valid JSON");
  SD_CHECK(header.is_object(), where, "header is JSON but not an object (", header.type_name(),
           ")");
  SD_CHECK(duplicate.empty(), where, "duplicate key '", duplicate, "' in the header");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      SD_CHECK(v.is_object(), where, "__metadata__ must be an object of strings, got ",
               v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        SD_CHECK(m.value().is_string(), where, "__metadata__ value of '", m.key(),
                 "' must be a string, got ", m.value().type_name());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tw = where + "tensor '" + key + "': ";
    SD_CHECK(v.is_object(), tw, "entry must be an object, got ", v.type_name());
    for (auto f = v.begin(); f != v.end(); ++f)
      SD_CHECK(f.key() == "dtype" || f.key() == "shape" || f.key() == "data_offsets", tw,
               "unexpected field '", f.key(), "' (expected dtype, shape, data_offsets)");
    SD_CHECK(v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), tw,
             "entry needs dtype, shape and data_offsets");

    SafetensorsEntry e;
    e.name = key;
    const json& dt = v["dtype"];
    SD_CHECK(dt.is_string(), tw, "dtype must be a string, got ", dt.type_name());
    e.dtype = dt.get<std::string>();
    const size_t esize = file_dtype_size(e.dtype);
    SD_CHECK(esize > 0, tw, "unknown dtype '", e.dtype, "'");

    const json& shape = v["shape"];
    SD_CHECK(shape.is_array(), tw, "shape must be an array, got ", shape.type_name());
    SD_CHECK(shape.size() <= size_t(Shape::kMaxRank), tw, "shape rank ", shape.size(),
             " exceeds the supported maximum ", Shape::kMaxRank);
    uint64_t numel = 1;
    bool numel_overflow = false;
    for (const json& d : shape) {
      SD_CHECK(d.is_number_unsigned(), tw, "shape ", shape.dump(),
               " must hold non-negative integers");
      const uint64_t dim = d.get<uint64_t>();
      SD_CHECK(dim <= uint64_t(INT64_MAX), tw, "shape dimension ", dim, " is too large");
      e.shape.dims[e.shape.rank++] = int64_t(dim);
      numel_overflow = numel_overflow || __builtin_mul_overflow(numel, dim, &numel);
    }

    const json& off = v["data_offsets"];
    SD_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                 off[1].is_number_unsigned(),
             tw, "data_offsets must be two non-negative integers, got ", off.dump());
    const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    SD_CHECK(begin <= end, tw, "data_offsets [", begin, ", ", end, "] begin after end");
    SD_CHECK(end <= data_len, tw, "data_offsets [", begin, ", ", end,
             "] past the end of the data area (", data_len, " bytes)");
    uint64_t bytes = 0;
    SD_CHECK(!numel_overflow && !__builtin_mul_overflow(numel, uint64_t(esize), &bytes) &&
                 bytes == end - begin,
             tw, "shape ", e.shape.str(), " x ", e.dtype, " needs ",
             numel_overflow ? std::string("an overflowing number of")
                            : std::to_string(numel) + " x " + std::to_string(esize),
             " bytes but data_offsets [", begin, ", ", end, "] hold ", end - begin);
    e.begin = size_t(begin);
    e.end = size_t(end);
    entries_.push_back(std::move(e));
  }

  // The tensors, in offset order, must tile the data area exactly.
  std::vector<size_t> order(entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(entries_[a].begin, entries_[a].end) <
           std::pair(entries_[b].begin, entries_[b].end);
  });
  size_t covered = 0;
  const SafetensorsEntry* prev = nullptr;
  for (size_t i : order) {
    const SafetensorsEntry& e = entries_[i];
    SD_CHECK(e.begin >= covered, where, "tensor '", e.name, "' [", e.begin, ", ", e.end,
             "] overlaps tensor '", prev ? prev->name : "", "' which ends at ", covered);
    SD_CHECK(e.begin == covered, where, "hole in the data area: bytes [", covered, ", ", e.begin,
             ") before tensor '", e.name, "' belong to no tensor");
    covered = e.end;
    prev = &e;
  }
  SD_CHECK(covered == data_len, where, "hole in the data area: bytes [", covered, ", ", data_len,
           ") at the end belong to no tensor");

  std::sort(entries_.begin(), entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

bool SafetensorsFile::contains(const std::string& name) const {
  return index_.count(name) != 0;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    fail("safetensors file '", path_, "': no tensor named '", name, "' (", entries_.size(),
         " tensors in the file)");
  return entries_[it->second];
}

Tensor SafetensorsFile::view(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  DType dt;
  SD_CHECK(float_dtype(e.dtype, &dt), "safetensors file '", path_, "': tensor '", name,
           "' has dtype ", e.dtype, "; only F32, F16 and BF16 tensors can be used as floats");
  SD_CHECK(!released_, "safetensors file '", path_, "': tensor '", name,
           "' cannot be viewed after its pages were released; use load()");
  const uint8_t* p = base_ + data_start_ + e.begin;
  SD_CHECK(reinterpret_cast<uintptr_t>(p) % dtype_size(dt) == 0, "safetensors file '", path_,
           "': tensor '", name, "' data is not aligned to its ", e.dtype,
           " element size (header length not padded); use load() for a copy");
  return Tensor::wrap(e.shape, dt, const_cast<uint8_t*>(p));
}

Tensor SafetensorsFile::load(const std::string& name, DType dtype, const Shape& expect) const {
  const SafetensorsEntry& e = entry(name);
  DType src_type;
  SD_CHECK(float_dtype(e.dtype, &src_type), "safetensors file '", path_, "': tensor '", name,
           "' has dtype ", e.dtype, "; only F32, F16 and BF16 tensors can be loaded as floats");
  if (expect.rank > 0)
    SD_CHECK(expect == e.shape, "safetensors file '", path_, "': tensor '", name, "' has shape ",
             e.shape.str(), ", expected ", expect.str());
  const size_t n = size_t(e.shape.numel());
  StorageRef storage = host_storage(n * dtype_size(dtype));
  void* dst = storage.get()->ptr();
  advise_huge_pages(dst, n * dtype_size(dtype));
  const uint8_t* src = base_ + data_start_ + e.begin;
  if (released_) {  // a later re-read (LoRA): through pread, never the mapping (see the header)
    StorageRef bytes = host_storage(e.end - e.begin);
    read_checked(data_start_ + e.begin, e.end - e.begin, bytes.get()->ptr(),
                 "tensor '" + name + "'");
    convert_parallel(bytes.get()->ptr(), src_type, dst, dtype, n);
  } else if (reinterpret_cast<uintptr_t>(src) % dtype_size(src_type) == 0) {
    convert_parallel(src, src_type, dst, dtype, n);
  } else {  // unaligned source (unpadded header): copy out first
    StorageRef aligned = host_storage(e.end - e.begin);
    std::memcpy(aligned.get()->ptr(), src, e.end - e.begin);
    convert_parallel(aligned.get()->ptr(), src_type, dst, dtype, n);
  }
  return Tensor(e.shape, dtype, Device::CPU, dst, std::move(storage));
}

// ---- writing -----------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  // Data layout: larger elements first, then by name, so that (with the padded header) every
  // tensor starts aligned to its element size. Header keys are in name order.
  std::vector<const std::pair<const std::string, Tensor>*> layout;
  for (const auto& kv : tensors) {
    const auto& [name, t] = kv;
    SD_CHECK(name != "__metadata__", "cannot write safetensors file '", path,
             "': '__metadata__' is reserved and cannot name a tensor");
    SD_CHECK(t.defined() && t.device() == Device::CPU && t.is_contiguous(),
             "cannot write safetensors file '", path, "': tensor '", name,
             "' must be a defined, contiguous host tensor");
    layout.push_back(&kv);
  }
  std::stable_sort(layout.begin(), layout.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype()) > dtype_size(b->second.dtype());
  });
  std::map<std::string, std::pair<size_t, size_t>> offsets;
  size_t offset = 0;
  for (const auto* kv : layout) {
    offsets[kv->first] = {offset, offset + kv->second.nbytes()};
    offset += kv->second.nbytes();
  }
  for (const auto& [name, t] : tensors) {
    std::vector<int64_t> shape(t.shape().dims, t.shape().dims + t.rank());
    const auto [begin, end] = offsets[name];
    header[name] = {
        {"dtype", file_dtype_name(t.dtype())}, {"shape", shape}, {"data_offsets", {begin, end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data area starts 8-byte aligned
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = uint8_t(uint64_t(text.size()) >> (8 * i));

  std::vector<ByteSpan> pieces{{len_bytes, 8}, {text.data(), text.size()}};
  for (const auto* kv : layout) pieces.push_back({kv->second.data(), kv->second.nbytes()});
  write_file_atomically(path, pieces, "safetensors file");
}

}  // namespace sd
