// core/machine.h: the process memory readings the load benchmark prints, and the memory left
// that large host allocations are checked against.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "core/error.h"
#include "core/machine.h"
#include "core/tensor.h"

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

TEST(AvailableMemory, IsReadAndALargerTensorIsAClearError) {
  const int64_t available = available_memory();
  if (available < 0) GTEST_SKIP() << "no /proc/meminfo here";
  EXPECT_GT(available, int64_t(16) << 20);
  // Twice what the machine has left: refused before a page is touched, naming both sizes.
  const int64_t floats = available / 2;
  try {
    (void)Tensor::host({floats}, DType::F32);
    FAIL() << "allocated " << floats * 4 << " bytes with " << available << " available";
  } catch (const OutOfMemory& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of memory: cannot allocate "), std::string::npos) << m;
    EXPECT_NE(m.find(" GiB available (MemAvailable + SwapFree)"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace sd
