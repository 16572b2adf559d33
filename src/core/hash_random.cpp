#include "core/hash_random.h"

namespace sd {

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void hash_uniform(std::string_view name, float scale, float offset, float* out, size_t n) {
  const uint64_t h = fnv1a64(name);
  const double s = scale, o = offset;
  constexpr double kInv24 = 1.0 / 16777216.0;
  // Each element depends on its index only, so the loop parallelises freely.
#pragma omp parallel for schedule(static) if (n > (size_t(1) << 16))
  for (size_t i = 0; i < n; ++i) {
    const double u = double(splitmix64(h + i) >> 40) * kInv24;
    out[i] = float(s * (2.0 * u - 1.0) + o);
  }
}

}  // namespace sd
