// The CPU backend's oneDNN kernels: convolution, linear (matmul) and attention.
//
// Primitives are created once per (shapes, dtypes, post-ops) and kept in a cache, together with
// their memory objects, so a steady-state call looks one key up and executes (no primitive
// creation, no weight reorder). Weights arrive plain (conv OIHW, linear [out, in]) in the compute
// dtype; the first primitive that uses one reorders it into the layout that primitive prefers
// (format_tag::any) and keeps it in Weight::packed.
//
// Convolutions keep NHWC where oneDNN has a fast NHWC kernel (brgemm, AVX-512) and otherwise run
// in oneDNN's preferred blocked layout with reorders at the edges (see conv2d in the .cpp).
//
// A DnnlKernels object is driven by one thread at a time (like a device stream).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace sd::cpu {

struct DnnlStats {
  size_t primitives_created = 0;  // oneDNN primitives built so far (cache misses)
  size_t weight_reorders = 0;     // weights converted into a primitive's preferred layout
  size_t cached_primitives = 0;
  std::string last_impl;  // oneDNN implementation of the most recently created primitive
};

// The oneDNN CPU ISA in use, e.g. "avx512_core_bf16", and whether it runs bf16 convolutions and
// matrix products natively (AVX512-BF16 or newer).
std::string dnnl_isa_name();
bool dnnl_has_bf16();

// An empty Weight::packed holder, set when a weight is created so that copies of the Weight
// share the layouts packed later.
std::shared_ptr<void> new_packed_weight();
// Drops the packed layouts of `w` (after its values changed); they are rebuilt at next use.
void clear_packed_weight(const Weight& w);

class DnnlKernels {
 public:
  DnnlKernels();
  ~DnnlKernels();
  DnnlKernels(const DnnlKernels&) = delete;
  DnnlKernels& operator=(const DnnlKernels&) = delete;

  // y [N, Ho, Wo, Cout] = act(conv(x, w) + bias + residual), all NHWC in x's dtype.
  // Temporaries (activations in a blocked layout) come from `arena`.
  void conv2d(const Tensor& x, const Weight& w, const Weight* bias, Conv2dParams p, Act act,
              const Tensor* residual, Arena& arena, const Tensor& y);
  // y (NHWC) = the chain of convolutions and upsamples `steps` on x (NHWC) (Backend::conv_chain;
  // `last_use` from check_conv_chain). The intermediates stay in the layout each convolution
  // prefers, in temporaries from `arena`; only layout changes are reordered.
  void conv_chain(const Tensor& x, const std::vector<ChainStep>& steps,
                  const std::vector<int>& last_use, Arena& arena, const Tensor& y);
  // y [..., out] = act(x · wᵀ + bias + residual).
  void linear(const Tensor& x, const Weight& w, const Weight* bias, Act act, const Tensor* residual,
              const Tensor& y);
  // out [B, Lq, H*D] = softmax(q kᵀ / sqrt(D)) v per head. Work items are (batch, head, query
  // chunk) spread over the OpenMP threads; each runs its two single-threaded oneDNN matmuls and
  // the softmax on its own f32 scores (chunk × Lk, ≤ 512 KiB, so they stay in cache), taken
  // with the scratchpads from `arena`. [B, H, Lq, Lk] is never materialised.
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal,
                 Arena& arena, const Tensor& out);
  // Test hook: query rows per attention chunk (0 = sized from the scores budget).
  void set_attention_chunk(int64_t rows) { attention_chunk_ = rows; }
  void wait();  // waits for the oneDNN stream
  DnnlStats stats() const;

  struct Impl;  // the primitive cache (dnnl_impl.h; internal to the dnnl_*.cpp files)

 private:
  std::unique_ptr<Impl> impl_;
  int64_t attention_chunk_ = 0;
};

}  // namespace sd::cpu
