// Deterministic, counter-based pseudo-random numbers keyed by a name: the same (name, index)
// always gives the same value, in any order and on any machine. Used to fill full-size models
// with reproducible random weights in tests and benchmarks (full-size weights are not committed);
// tools/hash_random.py implements the same function bit for bit, so the Python fixture tools and
// the C++ tests build identical models from nothing but the parameter names.
//
// Definition, for parameter name N (its UTF-8 bytes) and element index i = 0, 1, ...:
//   h    = fnv1a64(N)                           (offset 0xcbf29ce484222325, prime 0x100000001b3)
//   x    = splitmix64(h + i)                    (mod 2^64; Steele, Lea & Flood's finaliser)
//   u    = (x >> 40) * 2^-24                    (24 random bits, uniform in [0, 1), exact in f32)
//   v    = 2u - 1                               (uniform in [-1, 1))
//   out  = float(double(scale) * v + double(offset))   (one rounding, to nearest-even)
// With scale and offset given as f32, scale * v is exact in double, so the result does not depend
// on whether the compiler contracts the multiply-add.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sd {

uint64_t fnv1a64(std::string_view bytes);
uint64_t splitmix64(uint64_t x);

// out[i] = offset + scale * v(name, i) for i in [0, n), as defined above.
void hash_uniform(std::string_view name, float scale, float offset, float* out, size_t n);

}  // namespace sd
