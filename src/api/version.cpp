#include "streamdiff/version.h"

namespace streamdiff {
const char* version() {
  return SD_VERSION;
}
}  // namespace streamdiff
