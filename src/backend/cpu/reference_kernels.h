// Reference kernels: the plain, obviously-correct twin of every kernel in the Backend interface.
// They are simple loops on host tensors (accumulating in double), in the engine's layouts:
// activations NHWC / [..., C], conv weights OIHW, linear weights [out, in]. Inputs may be any
// host dtype (they are read as f32); results are f32 host tensors.
//
// They are slow on purpose and exist for tests: the CPU backend's fast kernels and the CUDA
// backend's kernels are compared against them on random shapes.
#pragma once

#include "backend/backend.h"
#include "core/tensor.h"

namespace sd::ref {

// The activation applied to one value, computed in double with the libm functions
// (GELU: 0.5·x·(1 + erf(x/√2)); GELUTanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
// evaluated as x / (1 + e^{−2u}) with u the tanh argument).
double activate(double x, Act act);

// y = act(conv(x, w) + bias + residual); x [N, H, W, Cin], w [Cout, Cin, kh, kw],
// bias [Cout] or null, residual [N, Ho, Wo, Cout] or null.
Tensor conv2d(const Tensor& x_nhwc, const Tensor& w_oihw, const Tensor* bias, Conv2dParams p,
              Act act = Act::None, const Tensor* residual = nullptr);
// y = act(x · wᵀ + bias + residual); x [..., in], w [out, in], y [..., out].
Tensor linear(const Tensor& x, const Tensor& w_out_in, const Tensor* bias, Act act = Act::None,
              const Tensor* residual = nullptr);
// Group norm over [N, ..., C] (statistics per sample and group over all positions and the
// group's channels), per-channel affine, then act (None or SiLU).
Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                  Act act = Act::None);
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps);
Tensor activate(const Tensor& x, Act act);
Tensor geglu(const Tensor& x);  // x [..., 2F] -> x[..., :F] * gelu_erf(x[..., F:])
Tensor softmax(const Tensor& x, float scale = 1.f);  // over the last dimension of x*scale
// q [B, Lq, H*D], k and v [B, Lk, H*D]; scale 1/sqrt(D); causal: query i sees keys j <= i.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal = false);
Tensor upsample_nearest2x(const Tensor& x_nhwc);
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b);  // numpy broadcasting
Tensor scale(const Tensor& x, float alpha, float beta = 0.f);
Tensor concat_channels(const Tensor& a, const Tensor& b);
// Converts element by element through f32 (the engine's rounding rules); result in `dtype`.
Tensor cast(const Tensor& x, DType dtype);

// The output shape of a numpy-broadcast between a and b (shapes aligned at the right).
Shape broadcast_shape(const Shape& a, const Shape& b);

// ‖ours − ref‖ / ‖ref‖ over all elements (‖ours − ref‖ when ref is all zeros); shapes must match.
// Any host dtypes.
double rel_error(const Tensor& ours, const Tensor& ref);

}  // namespace sd::ref
