// Launchers of the CUDA backend's own kernels (defined in the .cu files beside this one). Each
// enqueues its work on `stream` and returns at once. Tensors are device tensors, contiguous, in
// f32 or bf16 (cast also takes f16); the backend checks shapes and allocates outputs before the
// call. Vectors (biases, norm parameters) are f32.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/backend.h"

namespace sd::cuda {

// Multiprocessor count of the current device (cached after the first call).
int sm_count();
// cudaSuccess when this binary holds code the current device can run (used to detect GPUs that
// are too old for the build's architectures).
cudaError_t probe_kernel_image();

// ---- elementwise (elementwise.cu) ---------------------------------------------------------
void activate(const Tensor& x, const Tensor& y, Act act, cudaStream_t stream);  // y may be x
void scale(const Tensor& x, const Tensor& y, float alpha, float beta, cudaStream_t stream);
// x [..., 2F] -> y [..., F] = x[..., :F] * gelu_erf(x[..., F:]).
void geglu(const Tensor& x, const Tensor& y, cudaStream_t stream);
// y = a op b with numpy broadcasting; y has the broadcast shape; a, b and y share one dtype.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y, cudaStream_t stream);
// n elements of any of f32/f16/bf16 to any other.
void cast(const void* x, DType x_type, void* y, DType y_type, int64_t n, cudaStream_t stream);
// a [..., Ca], b [..., Cb] -> y [..., Ca + Cb].
void concat_last(const Tensor& a, const Tensor& b, const Tensor& y, cudaStream_t stream);
// x [N, H, W, C] -> y [N, 2H, 2W, C].
void upsample_nearest2x(const Tensor& x, const Tensor& y, cudaStream_t stream);
// The matmul epilogue when cuBLASLt does not fuse it: y [R, C] (in place) =
// act(y + bias[C] + residual[R, C]); bias (f32) and residual may be null.
void bias_residual_act(const Tensor& y, const float* bias, const Tensor* residual, Act act,
                       cudaStream_t stream);

// ---- normalisation and softmax (norm.cu) --------------------------------------------------
void softmax_last(const Tensor& x, const Tensor& y, float scale, cudaStream_t stream);
// y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dimension; f32 statistics.
void layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps, const Tensor& y,
                cudaStream_t stream);
// Group norm of NHWC x (any rank >= 2: [N, ..., C], the middle dims are the spatial ones).
// `workspace` must hold group_norm_workspace_floats() floats.
int64_t group_norm_workspace_floats(const Shape& x, int groups);
void group_norm(const Tensor& x, int groups, const float* gamma, const float* beta, float eps,
                bool silu, const Tensor& y, float* workspace, cudaStream_t stream);

}  // namespace sd::cuda
