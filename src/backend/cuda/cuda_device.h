// Device-level pieces of the CUDA backend: GPU discovery, the stream that orders all of a
// backend's work, and device memory blocks freed in stream order.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "core/tensor.h"

namespace sd::cuda {

// What the runtime says about device 0, probed once per process.
struct DeviceStatus {
  bool usable = false;
  std::string reason;  // why not, when !usable
  int device = 0;
  cudaDeviceProp props{};
  bool memory_pools = false;  // cudaMallocAsync is supported
};
const DeviceStatus& device_status();

// Owns a non-blocking stream; shared by the backend and every block it allocated, so that
// memory outliving the backend can still be freed in order.
class StreamOwner {
 public:
  explicit StreamOwner(bool async_alloc);
  ~StreamOwner();
  StreamOwner(const StreamOwner&) = delete;
  StreamOwner& operator=(const StreamOwner&) = delete;
  cudaStream_t get() const { return stream_; }
  bool async_alloc() const { return async_alloc_; }

 private:
  cudaStream_t stream_ = nullptr;
  bool async_alloc_;
};

// `bytes` of device memory, allocated (cudaMallocAsync where supported) and freed on the stream.
StorageRef device_storage(size_t bytes, const std::shared_ptr<StreamOwner>& stream);

}  // namespace sd::cuda
