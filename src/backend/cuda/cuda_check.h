// Error checking for CUDA runtime and cuBLAS calls: a failed call becomes an sd::Error that
// names the call, its source location and the library's name for the status.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "core/error.h"

namespace sd::cuda {

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status == cudaSuccess) return;
  fail("CUDA error in ", call, " (", file, ":", line, "): ", cudaGetErrorName(status), " - ",
       cudaGetErrorString(status));
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("cuBLAS error in ", call, " (", file, ":", line, "): ", cublasGetStatusName(status), " - ",
       cublasGetStatusString(status));
}

}  // namespace sd::cuda

// SD_CUDA_CHECK(cudaMalloc(&p, n)); SD_CUBLAS_CHECK(cublasLtMatmul(...));
#define SD_CUDA_CHECK(call) ::sd::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define SD_CUBLAS_CHECK(call) ::sd::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After a kernel launch: reports launch-configuration errors (and earlier asynchronous ones).
#define SD_CUDA_CHECK_LAUNCH(kernel_name) \
  ::sd::cuda::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
