// Counts large heap allocations (operator new of at least kLargeAllocation bytes) made by any
// thread while counting is on; the test binary replaces the global operator new for this.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sd::test {

constexpr size_t kLargeAllocation = 16 << 10;  // a 64x64 RGB f32 frame is 48 KiB

void count_large_allocations(bool on);  // on: also resets the count
int64_t large_allocations();

}  // namespace sd::test
