#include "core/machine.h"

#include <fstream>
#include <sstream>

namespace sd {

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

ProcessMemory process_memory() {
  ProcessMemory m;
  std::ifstream f("/proc/self/status");
  std::string line;
  // Lines look like "VmRSS:\t  123456 kB".
  auto kib_of = [](const std::string& l) -> int64_t {
    std::istringstream in(l.substr(l.find(':') + 1));
    int64_t v = -1;
    std::string unit;
    if (!(in >> v >> unit) || unit != "kB") return -1;
    return v * 1024;
  };
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss = kib_of(line);
    if (line.rfind("VmHWM:", 0) == 0) m.peak_rss = kib_of(line);
  }
  return m;
}

int64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string name, unit;
  int64_t kib = 0, total = 0;
  bool found = false;
  while (f >> name >> kib) {
    std::getline(f, unit);  // " kB"
    if (name == "MemAvailable:" || name == "SwapFree:") {
      total += kib;
      found = found || name == "MemAvailable:";
    }
  }
  return found ? total * 1024 : -1;
}

bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return bool(f);
}

}  // namespace sd
