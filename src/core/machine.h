// Facts about the host machine for benchmark and log lines.
#pragma once

#include <string>

namespace sd {

std::string cpu_model_name();  // /proc/cpuinfo's "model name", or "unknown CPU"

}  // namespace sd
