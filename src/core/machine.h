// Facts about the host machine and this process for benchmark and log lines.
#pragma once

#include <cstdint>
#include <string>

namespace sd {

std::string cpu_model_name();  // /proc/cpuinfo's "model name", or "unknown CPU"

// Resident memory of this process, from /proc/self/status (Linux): rss = VmRSS, peak_rss = VmHWM
// (the high-water mark since start or the last reset_peak_rss()), in bytes; -1 where unknown.
struct ProcessMemory {
  int64_t rss = -1;
  int64_t peak_rss = -1;
};
ProcessMemory process_memory();

// Memory a new allocation can still get without swapping or the OOM killer: MemAvailable plus
// SwapFree from /proc/meminfo (Linux), in bytes; -1 where unknown.
int64_t available_memory();

// Resets the peak (VmHWM) to the current RSS by writing "5" to /proc/self/clear_refs (Linux 4.0
// and later); false where that is not possible.
bool reset_peak_rss();

}  // namespace sd
