#include "hub/hub_hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace sd::hub {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  SD_CHECK(ctx_ != nullptr, "SHA-256: EVP_MD_CTX_new failed (out of memory)");
  reset();
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::reset() {
  SD_CHECK(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) == 1,
           "SHA-256: EVP_DigestInit_ex failed");
  bytes_ = 0;
}

void Sha256::update(const void* data, size_t size) {
  SD_CHECK(EVP_DigestUpdate(ctx_, data, size) == 1, "SHA-256: EVP_DigestUpdate failed");
  bytes_ += int64_t(size);
}

std::string Sha256::hex_digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  SD_CHECK(EVP_DigestFinal_ex(ctx_, md, &len) == 1, "SHA-256: EVP_DigestFinal_ex failed");
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  reset();
  return out;
}

void hash_file_prefix(const std::string& path, int64_t size, Sha256& hash) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SD_CHECK(fd >= 0, "cannot open '", path, "' to hash it: ", std::strerror(errno));
  std::vector<char> buf(1 << 20);
  int64_t left = size;
  while (left > 0) {
    const ssize_t n = ::read(fd, buf.data(), size_t(std::min<int64_t>(left, int64_t(buf.size()))));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      fail("cannot read '", path,
           "' to hash it: ", n == 0 ? "it is shorter than expected" : std::strerror(err));
    }
    hash.update(buf.data(), size_t(n));
    left -= n;
  }
  ::close(fd);
}

std::string sha256_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SD_CHECK(fd >= 0, "cannot open '", path, "' to hash it: ", std::strerror(errno));
  const off_t size = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  SD_CHECK(size >= 0, "cannot size '", path, "'");
  Sha256 hash;
  hash_file_prefix(path, size, hash);
  return hash.hex_digest();
}

}  // namespace sd::hub
