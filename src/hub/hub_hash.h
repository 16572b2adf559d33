// SHA-256 through OpenSSL's EVP interface: the content hash the Hugging Face Hub gives for LFS
// files (their ETag, X-Linked-Etag, and `lfs.sha256` in a repository's file list).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct evp_md_ctx_st;

namespace sd::hub {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  // The digest of everything given since construction or the last reset(), as 64 lower-case hex
  // digits; resets the state.
  std::string hex_digest();
  void reset();
  int64_t bytes() const { return bytes_; }

 private:
  evp_md_ctx_st* ctx_;
  int64_t bytes_ = 0;
};

// Feeds the first `size` bytes of the file `path` to `hash` (throws sd::Error naming the file
// when it cannot be read or is shorter).
void hash_file_prefix(const std::string& path, int64_t size, Sha256& hash);

// The SHA-256 of a whole file, hex.
std::string sha256_file(const std::string& path);

}  // namespace sd::hub
