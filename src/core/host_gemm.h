// Row-major single-precision matrix product on the host, for load-time arithmetic (LoRA
// fusing): C = alpha * A · B + beta * C with A [M, K], B [K, N], C [M, N]. oneDNN's sgemm
// (multi-threaded, vectorized) does the work; gemm_f32_reference is the plain loop it is
// tested against.
#pragma once

#include <cstdint>

namespace sd {

void gemm_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, const float* B,
              float beta, float* C);
void gemm_f32_reference(int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        const float* B, float beta, float* C);

}  // namespace sd
