#include "core/host_gemm.h"

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"

namespace sd {

void gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
              float beta, float* C) {
  if (M == 0 || N == 0) return;
  const dnnl_status_t st = dnnl_sgemm('N', 'N', M, N, K, alpha, A, K, B, N, beta, C, N);
  SD_CHECK(st == dnnl_success, "gemm_f32 ", M, "x", N, "x", K, ": oneDNN sgemm failed (status ",
           int(st), ")");
}

void gemm_f32_reference(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        const float* B, float beta, float* C) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += double(A[i * K + k]) * double(B[k * N + j]);
      float& c = C[i * N + j];
      c = float(alpha * acc + (beta == 0.f ? 0.0 : double(beta) * c));
    }
}

}  // namespace sd
