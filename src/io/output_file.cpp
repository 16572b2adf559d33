#include "io/output_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace sd {
namespace {

bool write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min(n, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}

}  // namespace

void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces,
                           const std::string& what) {
  std::string tmp = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail("cannot write ", what, " '", path, "': ", std::strerror(errno));
  bool ok = ::fchmod(fd, 0644) == 0;
  for (size_t i = 0; ok && i < pieces.size(); ++i)
    ok = write_all(fd, pieces[i].data, pieces[i].size);
  int err = ok ? 0 : errno;
  if (::close(fd) != 0 && ok) {  // a delayed write error (NFS, some full file systems)
    ok = false;
    err = errno;
  }
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    fail("cannot write ", what, " '", path, "': ", std::strerror(err));
  }
}

}  // namespace sd
