/* streamdiff version (C and C++). */
#ifndef STREAMDIFF_VERSION_H_
#define STREAMDIFF_VERSION_H_

#include "streamdiff/export.h"

#define STREAMDIFF_VERSION_MAJOR 0
#define STREAMDIFF_VERSION_MINOR 2
#define STREAMDIFF_VERSION_PATCH 0

#ifdef __cplusplus
namespace streamdiff {
STREAMDIFF_API const char* version();  // "0.2.0": the library's version at run time
}  // namespace streamdiff
#endif

#endif /* STREAMDIFF_VERSION_H_ */
