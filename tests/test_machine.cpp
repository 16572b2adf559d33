// core/machine.h: the process memory readings the load benchmark prints.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "core/machine.h"

namespace sd {
namespace {

TEST(ProcessMemory, ResidentMemoryFollowsAnAllocationAndThePeakCanBeReset) {
  const ProcessMemory before = process_memory();
  ASSERT_GT(before.rss, 0);
  EXPECT_GE(before.peak_rss, before.rss);
  // Fresh pages straight from the kernel (malloc might reuse memory that is already resident).
  constexpr size_t kBytes = 64 << 20;
  void* block = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(block, MAP_FAILED);
  std::memset(block, 1, kBytes);  // resident only once written
  const ProcessMemory touched = process_memory();
  ASSERT_EQ(::munmap(block, kBytes), 0);
  const ProcessMemory freed = process_memory();
  EXPECT_GE(touched.rss - before.rss, int64_t(kBytes) * 3 / 4);
  EXPECT_GE(touched.peak_rss, touched.rss);
  EXPECT_LE(freed.rss, touched.rss - int64_t(kBytes) / 2);
  // The peak remembers the block (the kernel's counters may lag by a few pages).
  EXPECT_GE(freed.peak_rss, touched.rss - int64_t(kBytes) / 8);
  if (!reset_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  const ProcessMemory reset = process_memory();
  EXPECT_LT(reset.peak_rss, touched.rss - int64_t(kBytes) / 2);
  EXPECT_GE(reset.peak_rss, reset.rss);
}

}  // namespace
}  // namespace sd
