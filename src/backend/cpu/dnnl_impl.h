// Internals shared by the CPU backend's oneDNN kernel files (dnnl_kernels.cpp and
// dnnl_conv_chain.cpp): the primitive cache and its helpers. Not an interface: include it only
// from src/backend/cpu/dnnl_*.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <vector>

#include "backend/cpu/dnnl_kernels.h"

namespace sd::cpu {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dt dnnl_type(DType t, const char* what);  // f32 / bf16, else sd::Error naming `what`
// Post-ops: residual (binary add, or sum over dst pre-filled with it), then the activation.
dnnl::primitive_attr make_attr(Act act, const memory::desc* residual_md, bool as_sum);
// An inference convolution of src ([N, C, H, W] in any layout, or format_tag::any) with O
// filters of KH x KW into dst, with bias, post-ops as make_attr.
dnnl::convolution_forward::primitive_desc conv_pd(const dnnl::engine& eng, const memory::desc& src,
                                                  int64_t O, int64_t KH, int64_t KW, bool bias,
                                                  const memory::desc& dst, Conv2dParams p, Act act,
                                                  const memory::desc* residual, bool as_sum);
bool is_reference_impl(const char* impl);  // oneDNN's slow reference kernels ("ref:...")
void check_status(dnnl_status_t s, const char* what);

// Cache key: a short list of integers (no heap allocation per lookup).
struct Key {
  std::array<int64_t, 16> v{};
  int n = 0;
  Key& add(int64_t x) {
    v[size_t(n++)] = x;
    return *this;
  }
  bool operator==(const Key& o) const { return n == o.n && v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < k.n; ++i) h = (h ^ uint64_t(k.v[size_t(i)])) * 1099511628211ull;
    return size_t(h);
  }
};

// A cached primitive with its memory objects (data handles are set per call).
struct Prim {
  dnnl::primitive prim;
  memory::desc weights_md;
  memory src, dst, bias, residual;
  bool residual_as_sum = false;  // residual copied into dst + sum post-op (fallback)
  // Convolutions whose src and/or dst are in oneDNN's preferred (blocked) layout: the NHWC
  // tensors are reordered in and out through arena temporaries.
  bool src_reorder = false, dst_reorder = false;
  dnnl::primitive to_src, to_dst, from_dst;  // NHWC -> src, NHWC -> dst, dst -> NHWC
  memory nhwc_src, nhwc_dst;                 // NHWC views for the reorders
};

// The two matrix products of attention for one (head, query chunk of m rows): scores [m, Lk] =
// q [m, D] · kᵀ and out [m, D] = p [m, Lk] · v [Lk, D], reading q, k, v and writing out in
// place inside the [B, L, H*D] tensors (row stride H*D). They run single-threaded inside the
// caller's OpenMP loop, so each thread has its own memory objects and scratchpad.
struct AttnPrims {
  dnnl::primitive qk, pv;
  size_t qk_scratch = 0, pv_scratch = 0;
  struct PerThread {
    memory q, k, s, qk_scratch, p, v, o, pv_scratch;
  };
  std::vector<PerThread> threads;
};

// An intermediate of conv_chain: its memory and the layout it is in.
struct ChainValue {
  Tensor t;
  memory::desc md;
};

struct DnnlKernels::Impl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  std::unordered_map<Key, Prim, KeyHash> cache;
  DnnlStats stats;

  void created(const char* impl) {
    ++stats.primitives_created;
    stats.last_impl = impl;
  }

  // The weight memory in the layout `want`, reordering (once per layout) from the plain user
  // layout `user_md` over w.t.
  memory packed(const Weight& w, const memory::desc& user_md, const memory::desc& want);
  // Runs prim with src, packed weights, optional bias/residual, dst.
  void run(Prim& p, const char* what, void* src, const memory& weights, const Weight* bias,
           const Tensor* residual, void* dst, size_t dst_bytes);

  // Attention primitives for one query-chunk height m (see attention()).
  AttnPrims& attention_prims(dt type, int64_t H, int64_t D, int64_t m, int64_t LK);
  std::unordered_map<Key, AttnPrims, KeyHash> attn_cache;
  std::vector<dnnl::stream> thread_streams;  // one per OpenMP thread, for concurrent execution
  std::vector<ChainValue> chain_values;      // conv_chain's outputs (reused: no heap per call)
};

}  // namespace sd::cpu
