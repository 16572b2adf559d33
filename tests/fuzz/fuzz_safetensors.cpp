// libFuzzer target for the safetensors header parser. Not part of the default build (tests/fuzz/
// is not globbed by CMake). Build and run with clang from the project root:
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
//     tests/fuzz/fuzz_safetensors.cpp src/io/safetensors.cpp src/core/dtype.cpp \
//     src/core/tensor.cpp -march=native -fopenmp -o fuzz_safetensors
//   mkdir -p corpus && ./fuzz_safetensors -max_len=4096 corpus
//
// Every input must either parse or be rejected with sd::Error; anything else (a crash, a
// sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = sd::SafetensorsFile::from_bytes(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-input");
    // Exercise the accessors on what parsed: every float tensor must load within bounds.
    for (const sd::SafetensorsEntry& e : file->entries()) {
      if (e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16")
        (void)file->load(e.name, sd::DType::F32);
    }
  } catch (const sd::Error&) {
  }
  return 0;
}
