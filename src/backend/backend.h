// The backend interface: everything a model needs from a device. Models are written once
// against it (src/models never names a backend); a backend supplies memory, transfers and kernels.
//
// Contract:
// - Tensors a kernel receives live on the backend's device, are contiguous and, unless stated,
//   have the backend's compute dtype (f32 or bf16). Image-like tensors are NHWC.
// - Kernels return new tensors from the backend's Arena (see core/arena.h), so a forward pass
//   with fixed shapes allocates nothing from the system after planning.
// - Work is ordered on the backend's stream. No kernel waits for the device; only
//   synchronize() and download() do. A CUDA backend can therefore capture a pass in a graph.
// - Weights are converted once, at load, by the *_weight() functions; a backend may keep a
//   repacked copy (e.g. oneDNN's blocked layout) in Weight::packed, created at first use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/tensor.h"

namespace sd {

// Activations that kernels can apply to their result (fused where the backend can).
enum class Act : uint8_t { None, ReLU, SiLU, GELU, GELUTanh, Tanh };
const char* act_name(Act a);

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div };

// A parameter converted for one backend. `t` is on the device: conv and linear weights in the
// compute dtype, vectors (biases, norm scales) in f32. `packed` is the backend's private cache.
struct Weight {
  Tensor t;
  mutable std::shared_ptr<void> packed;
  bool defined() const { return t.defined() && t.numel() > 0; }
};

struct Conv2dParams {
  int stride = 1;
  int pad = 0;  // same padding on all four sides, zeros
};

// One step of Backend::conv_chain: a convolution (w set) or a nearest 2x upsample (w null).
struct ChainStep {
  const Weight* w = nullptr;
  const Weight* bias = nullptr;
  Conv2dParams p;
  Act act = Act::None;
  // Adds output number `residual` before the activation: 0 is the chain's input, i + 1 the
  // output of step i (an earlier one); -1 adds nothing.
  int residual = -1;
};

struct BackendOptions {
  std::string device = "cpu";  // "cpu" or "cuda"
  std::string dtype = "auto";  // "auto" (bf16 where the CPU/GPU has fast bf16), "f32", "bf16"
  int threads = 0;             // CPU: 0 = all cores
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual Device device() const = 0;
  virtual std::string description() const = 0;  // e.g. "cpu: oneDNN 2.6.3, avx512_core_bf16, bf16"
  DType compute_dtype() const { return compute_; }
  Arena& arena() { return *arena_; }

  // ---- memory and transfers -------------------------------------------------------------
  virtual StorageRef allocate(size_t bytes) = 0;  // persistent device memory
  Tensor empty(const Shape& shape, DType dtype);  // persistent, contents undefined
  Tensor alloc(const Shape& shape, DType dtype) { return arena_->tensor(shape, dtype); }
  Tensor alloc(const Shape& shape) { return alloc(shape, compute_); }
  // Enqueue a copy host -> device or device -> host, converting dtype as needed. `host` must stay
  // alive until the next synchronize().
  virtual void copy_from_host(const Tensor& host, const Tensor& dst) = 0;
  virtual void copy_to_host(const Tensor& src, const Tensor& host) = 0;
  virtual void synchronize() = 0;
  // Conveniences built on the above.
  Tensor upload(const Tensor& host);                             // arena tensor in compute dtype
  Tensor download(const Tensor& src, DType dtype = DType::F32);  // synchronizes

  // ---- weights (host tensors of any dtype, PyTorch layouts) ------------------------------
  virtual Weight conv_weight(const Tensor& oihw) = 0;      // [out, in, kh, kw]
  virtual Weight linear_weight(const Tensor& out_in) = 0;  // [out, in]
  virtual Weight vector(const Tensor& v) = 0;              // bias / norm parameters -> f32
  // Overwrites the values of a conv or linear weight made by conv_weight / linear_weight with
  // `host` (same shape and layout as it was made from: [out, in, kh, kw] or [out, in]), in place:
  // every copy of `w` sees the new values, and packed forms are dropped (rebuilt at next use).
  // For LoRA fusing. Synchronizes.
  virtual void update_weight(const Weight& w, const Tensor& host) = 0;

  // ---- kernels ----------------------------------------------------------------------------
  // y = act(conv(x, w) + bias + residual); x [N, H, W, Cin], y [N, Ho, Wo, Cout].
  virtual Tensor conv2d(const Tensor& x, const Weight& w, const Weight* bias, Conv2dParams p,
                        Act act = Act::None, const Tensor* residual = nullptr) = 0;
  // y = act(x · wᵀ + bias + residual); x [..., in], y [..., out].
  virtual Tensor linear(const Tensor& x, const Weight& w, const Weight* bias, Act act = Act::None,
                        const Tensor* residual = nullptr) = 0;
  // Group norm over NHWC x with per-channel affine (f32 gamma/beta); act is None or SiLU.
  virtual Tensor group_norm(const Tensor& x, int groups, const Weight& gamma, const Weight& beta,
                            float eps, Act act = Act::None) = 0;
  // Layer norm over the last dimension.
  virtual Tensor layer_norm(const Tensor& x, const Weight& gamma, const Weight& beta,
                            float eps) = 0;
  virtual Tensor activate(const Tensor& x, Act act) = 0;
  // x [..., 2F] -> x[..., :F] * gelu(x[..., F:]) (erf GELU, as diffusers' GEGLU).
  virtual Tensor geglu(const Tensor& x) = 0;
  // Softmax over the last dimension of (x * scale).
  virtual Tensor softmax(const Tensor& x, float scale = 1.f) = 0;
  // Multi-head scaled-dot-product attention. q [B, Lq, H*D], k and v [B, Lk, H*D] with head h in
  // channels [h*D, (h+1)*D); out [B, Lq, H*D]; scale 1/sqrt(D). causal: query i attends to
  // keys j <= i only (CLIP text encoders).
  virtual Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads,
                           bool causal = false) = 0;
  virtual Tensor upsample_nearest2x(const Tensor& x) = 0;  // NHWC
  // Runs `steps` in order, each on the previous step's output, and returns the last output:
  // the same as calling conv2d / upsample_nearest2x step by step, which is what this default
  // does. A backend may keep the intermediates in a layout of its own (the CPU backend: oneDNN's
  // blocked layout where it has no fast NHWC convolution, reordered once at each end). Throws
  // sd::Error naming the step at fault for a bad chain.
  virtual Tensor conv_chain(const Tensor& x, const std::vector<ChainStep>& steps);
  // Elementwise a op b with numpy broadcasting (shapes aligned at the right).
  virtual Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) = 0;
  virtual Tensor scale(const Tensor& x, float alpha, float beta = 0.f) = 0;  // alpha*x + beta
  virtual Tensor concat_channels(const Tensor& a, const Tensor& b) = 0;      // along last dim
  virtual Tensor cast(const Tensor& x, DType dtype) = 0;

 protected:
  explicit Backend(DType compute) : compute_(compute) {}
  void init_arena(Device d) {
    arena_ = std::make_unique<Arena>(d, [this](size_t n) { return allocate(n); });
  }

 private:
  DType compute_;
  std::unique_ptr<Arena> arena_;
};

// Checks a conv_chain's steps (residuals name earlier outputs; upsamples carry nothing) and
// fills last_use[k] with the step that last reads output k (0: the input; i + 1: step i's).
void check_conv_chain(const std::vector<ChainStep>& steps, std::vector<int>& last_use);

// Creates the backend the options ask for; throws sd::Error if it is not available.
std::unique_ptr<Backend> make_backend(const BackendOptions& options);
bool cuda_available();  // a CUDA backend was built and a usable GPU is present

}  // namespace sd
