// The CPU backend's own kernels (everything that is not a convolution or a matrix product):
// OpenMP-parallel loops over host tensors stored as f32 or bf16, with f32 math (statistics in
// f32 partial sums reduced in double). The output tensor is allocated by the caller with the
// right shape; unless stated, input and output share one dtype (f32 or bf16), which may differ
// from the backend's compute dtype (so the bf16 variants are testable on any CPU).
#pragma once

#include "backend/backend.h"
#include "core/tensor.h"

namespace sd::cpu {

void activate(const Tensor& x, Act act, const Tensor& y);
void scale(const Tensor& x, float alpha, float beta, const Tensor& y);  // alpha*x + beta
void geglu(const Tensor& x, const Tensor& y);  // y [..., F] from x [..., 2F]
// x [N, ..., C]; gamma, beta: C floats; act None or SiLU.
void group_norm(const Tensor& x, int groups, const float* gamma, const float* beta, float eps,
                Act act, const Tensor& y);
void layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps, const Tensor& y);
void softmax(const Tensor& x, float scale, const Tensor& y);
void upsample_nearest2x(const Tensor& x, const Tensor& y);  // NHWC
// y = a op b with numpy broadcasting; y has the broadcast shape.
void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y);
void concat_channels(const Tensor& a, const Tensor& b, const Tensor& y);
// Any of f32/f16/bf16 to any; y has x's element count.
void cast(const Tensor& x, const Tensor& y);

// Attention's softmax on one query chunk, single-threaded (it runs inside the attention loop):
// scores s [rows, cols] (f32) become probabilities written to `out` (f32, may alias s, or bf16)
// with the same layout: p = softmax(s * scale) per row. When causal, row r is query q0 + r and
// sees keys j <= q0 + r only (the others get probability 0).
void attention_softmax(float* s, int64_t rows, int64_t cols, float scale, bool causal, int64_t q0,
                       void* out, DType out_dtype);

}  // namespace sd::cpu
