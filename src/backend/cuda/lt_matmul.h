// Matrix products on cuBLASLt for the CUDA backend's linear(): y[M, N] = x[M, K] · w[N, K]ᵀ,
// plus the epilogues cuBLASLt fuses (bias, ReLU, tanh-GELU) and a residual through beta = 1.
// Algorithms are chosen once per problem (shapes, dtype, epilogue, pointer alignment) and
// cached; later calls only set pointers and launch.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "backend/backend.h"

namespace sd::cuda {

struct MatmulArgs {
  int64_t m = 0, n = 0, k = 0;     // rows of x and y, output features, input features
  DType dtype = DType::F32;        // of x, w, y, residual and bias; accumulation is f32
  const void* x = nullptr;         // [m, k] row-major
  const void* w = nullptr;         // [n, k] row-major (PyTorch's Linear layout)
  void* y = nullptr;               // [m, n] row-major
  const void* bias = nullptr;      // [n] or null
  const void* residual = nullptr;  // [m, n] or null: y = x·wᵀ + bias + residual
  Act act = Act::None;             // one that fusable() accepts
};

class LtMatmul {
 public:
  explicit LtMatmul(cudaStream_t stream);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // Enqueues the product with its epilogue. Returns false (and enqueues nothing) when cuBLASLt
  // offers no algorithm for this epilogue; the caller then uses run_plain() and finishes itself.
  bool run(const MatmulArgs& args);
  // y = x · wᵀ alone (bias, residual and act are ignored): cuBLASLt, or cublasGemmEx when
  // cuBLASLt has no algorithm for the problem.
  void run_plain(const MatmulArgs& args);

  // Activations cuBLASLt applies in its epilogue. Its GELU is the tanh form; we fuse it in bf16
  // only, where its precision is not the limit, and keep f32 results to libm accuracy.
  static bool fusable(Act act, DType dtype) {
    return act == Act::None || act == Act::ReLU || (act == Act::GELUTanh && dtype == DType::BF16);
  }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, bool, bool, int>;
  Plan* plan_for(const MatmulArgs& args);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  cublasHandle_t blas_ = nullptr;  // created on first use of the cublasGemmEx fallback
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace sd::cuda
