#include "backend/cuda/cuda_device.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_kernels.h"

namespace sd::cuda {

namespace {

DeviceStatus probe() {
  DeviceStatus s;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    s.reason =
        std::string("CUDA runtime: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return s;
  }
  if (count == 0) {
    s.reason = "no CUDA device found";
    return s;
  }
  e = cudaGetDeviceProperties(&s.props, s.device);
  if (e == cudaSuccess) e = probe_kernel_image();
  if (e != cudaSuccess) {
    s.reason = std::string("GPU ") + s.props.name + " (sm_" + std::to_string(s.props.major) +
               std::to_string(s.props.minor) +
               ") cannot run this build's kernels: " + cudaGetErrorName(e) +
               " (rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(s.props.major) +
               std::to_string(s.props.minor) + ")";
    return s;
  }
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, s.device);
  s.memory_pools = pools != 0;
  s.usable = true;
  return s;
}

class DeviceStorage final : public Storage {
 public:
  DeviceStorage(size_t bytes, std::shared_ptr<StreamOwner> stream)
      : Storage(nullptr, bytes, Device::CUDA), stream_(std::move(stream)) {
    if (bytes == 0) return;
    const cudaError_t e = stream_->async_alloc() ? cudaMallocAsync(&ptr_, bytes, stream_->get())
                                                 : cudaMalloc(&ptr_, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the (non-sticky) allocation error
      fail("CUDA: cannot allocate ", bytes, " bytes of device memory: ", cudaGetErrorName(e), " - ",
           cudaGetErrorString(e));
    }
  }
  ~DeviceStorage() override {
    if (!ptr_) return;
    // Errors here can only be reported by the next checked call; a destructor must not throw.
    if (stream_->async_alloc()) {
      cudaFreeAsync(ptr_, stream_->get());
    } else {
      cudaFree(ptr_);
    }
  }

 private:
  std::shared_ptr<StreamOwner> stream_;
};

}  // namespace

const DeviceStatus& device_status() {
  static const DeviceStatus status = probe();
  return status;
}

StreamOwner::StreamOwner(bool async_alloc) : async_alloc_(async_alloc) {
  SD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

StreamOwner::~StreamOwner() {
  cudaStreamSynchronize(stream_);
  cudaStreamDestroy(stream_);
}

StorageRef device_storage(size_t bytes, const std::shared_ptr<StreamOwner>& stream) {
  return StorageRef(new DeviceStorage(bytes, stream));
}

}  // namespace sd::cuda

namespace sd {

bool cuda_device_present() {
  return cuda::device_status().usable;
}

std::string cuda_device_info() {
  const cuda::DeviceStatus& s = cuda::device_status();
  if (!s.usable) return {};
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.1f", double(s.props.totalGlobalMem) / double(1 << 30));
  return detail::concat(s.props.name, ", sm_", s.props.major, s.props.minor, ", ",
                        s.props.multiProcessorCount, " SMs, ", gib, " GiB, L2 ",
                        s.props.l2CacheSize >> 20, " MiB, driver ", driver / 1000, ".",
                        driver % 1000 / 10, ", runtime ", runtime / 1000, ".", runtime % 1000 / 10,
                        ", cuBLASLt ", cublasLtGetVersion());
}

}  // namespace sd
