#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#ifdef SD_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace sd {

std::unique_ptr<Backend> make_backend(const BackendOptions& options) {
  if (options.device == "cpu") return make_cpu_backend(options);
  if (options.device == "cuda") {
#ifdef SD_WITH_CUDA
    return make_cuda_backend(options);
#else
    fail("this streamdiff was built without CUDA (nvcc was not found at build time)");
#endif
  }
  fail("unknown device '", options.device, "' (expected cpu or cuda)");
}

bool cuda_available() {
#ifdef SD_WITH_CUDA
  return cuda_device_present();
#else
  return false;
#endif
}

}  // namespace sd
