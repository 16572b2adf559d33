// Helpers shared by the test suites.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "backend/cpu/reference_kernels.h"
#include "core/error.h"

namespace sd::test {

// A CPU backend computing in `dtype` ("f32", "bf16", "auto").
inline std::unique_ptr<Backend> cpu_backend(const std::string& dtype) {
  BackendOptions o;
  o.device = "cpu";
  o.dtype = dtype;
  return make_backend(o);
}

// ‖ours − ref‖ / ‖ref‖ (throws when the shapes differ).
using ref::rel_error;

// The message of the sd::Error that f() throws, or a marker when it throws none.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no sd::Error thrown)";
}

}  // namespace sd::test
