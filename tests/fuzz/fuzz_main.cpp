// libFuzzer entry point for one fuzz target, chosen when compiling:
//
//   clang++ ... -fsanitize=fuzzer -DSD_FUZZ_TARGET=fuzz_safetensors tests/fuzz/fuzz_main.cpp ...
//
// tests/fuzz/run.sh builds one binary per target of fuzz_targets.h this way.
#include <cstddef>
#include <cstdint>

#include "fuzz_targets.h"

#ifndef SD_FUZZ_TARGET
#error "define SD_FUZZ_TARGET as one of the functions of fuzz_targets.h (e.g. fuzz_safetensors)"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return sd::fuzz::SD_FUZZ_TARGET(data, size);
}
