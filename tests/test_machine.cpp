// core/machine.h: the process memory readings the load benchmark prints.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "core/machine.h"

namespace sd {
namespace {

TEST(ProcessMemory, ResidentMemoryFollowsAnAllocationAndThePeakCanBeReset) {
  const ProcessMemory before = process_memory();
  ASSERT_GT(before.rss, 0);
  EXPECT_GE(before.peak_rss, before.rss);
  constexpr int64_t kBytes = 64 << 20;
  ProcessMemory touched;
  {
    std::unique_ptr<char[]> block(new char[size_t(kBytes)]);
    std::memset(block.get(), 1, size_t(kBytes));  // resident only once written
    touched = process_memory();
    EXPECT_EQ(block[size_t(kBytes) - 1], 1);
  }
  EXPECT_GE(touched.rss - before.rss, kBytes * 3 / 4);
  EXPECT_GE(touched.peak_rss, touched.rss);
  const ProcessMemory freed = process_memory();  // the block was mmap()ed: unmapped on delete
  EXPECT_LE(freed.rss, touched.rss - kBytes / 2);
  if (!reset_peak_rss()) GTEST_SKIP() << "/proc/self/clear_refs is not writable here";
  const ProcessMemory reset = process_memory();
  EXPECT_LT(reset.peak_rss, touched.peak_rss - kBytes / 2);
  EXPECT_GE(reset.peak_rss, reset.rss);
}

}  // namespace
}  // namespace sd
