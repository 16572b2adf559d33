// streamdiff version.
#pragma once

namespace streamdiff {
const char* version();  // "0.1.0"
}  // namespace streamdiff
