// safetensors: reading (memory-mapped, strictly validated) and writing.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data area. Validation: N within the file and below
// kMaxHeaderBytes, a valid JSON object without duplicate keys, each entry an object with exactly
// dtype/shape/data_offsets, a known dtype (F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U64
// U32 U16 U8 BOOL; only F32/F16/BF16 can be viewed or loaded), a shape of non-negative integers
// (rank <= Shape::kMaxRank), begin <= end inside the data area, shape x dtype size == byte
// length, tensors (in offset order) tiling the data area with no hole and no overlap, and
// __metadata__ a string -> string object. Every error names the file and, where there is one,
// the tensor. entries() are in name order.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace sd {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "I64", ...
  Shape shape;
  size_t begin = 0, end = 0;  // byte offsets inside the data area
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  // Maps and validates `path`; throws sd::Error naming the file and the problem.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Validates an in-memory image of a file (the parser the fuzzer and the tests drive); `name`
  // is used in messages. The bytes are copied.
  static std::unique_ptr<SafetensorsFile> from_bytes(std::string_view bytes,
                                                     const std::string& name);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const;
  const SafetensorsEntry& entry(const std::string& name) const;  // throws if absent

  // Borrowed, read-only host view of a float tensor's bytes (valid while this file object
  // lives). Throws if the tensor is absent, not F32/F16/BF16, or not aligned to its element size
  // (possible in files whose header length is not padded; load() handles those), and after
  // release_resident() (see there).
  Tensor view(const std::string& name) const;
  // Host copy converted to `dtype` (bit-exact with core convert(); vectorized and parallel for
  // large tensors); if `expect` has rank > 0 the shape must match it (the error names the
  // tensor and both shapes).
  Tensor load(const std::string& name, DType dtype, const Shape& expect = Shape()) const;
  // Drops this process's resident pages of the mapping (they stay in the OS page cache), so a
  // file kept open for later reads (LoRA base weights) does not count in resident memory. From
  // then on load() reads with pread() instead of through the mapping, after checking that the
  // file still has the size and modification time it had when opened: a file truncated or
  // rewritten in place while the model is loaded gives an error naming it, never the SIGBUS
  // that touching a truncated mapping raises. (A file replaced by rename is harmless: the open
  // descriptor keeps the old one.) No effect on in-memory images.
  void release_resident() const;

 private:
  SafetensorsFile() = default;
  void parse(const std::string& name);
  std::string path_;
  const uint8_t* base_ = nullptr;  // start of the file image
  size_t size_ = 0;
  size_t data_start_ = 0;
  void* map_ = nullptr;   // mmap()ed region, or
  std::string owned_;     // the copied bytes
  int fd_ = -1;           // the mapped file, kept open for reads after release_resident()
  int64_t mtime_ns_ = 0;  // its modification time when opened
  mutable std::atomic<bool> released_{false};
  // Reads [offset, offset + n) of the file into dst with pread(), after checking that the file
  // is unchanged since open(); throws naming the file and `what` otherwise.
  void read_checked(size_t offset, size_t n, void* dst, const std::string& what) const;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (contiguous host, F32/F16/BF16) with optional metadata: header keys in name
// order, padded with spaces to a multiple of 8 bytes; data ordered by element size (largest
// first), then name, so every tensor is aligned to its element size. Writes to `path.tmp-XXXXXX`
// in the same folder and renames it, so a failed write never leaves a partial file under
// `path`. Throws sd::Error naming the path when it cannot be written.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sd
