#include "backend/cpu/dnnl_kernels.h"
#include "backend/cpu/dnnl_impl.h"

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace sd::cpu {

namespace {

// One thread's attention scores (f32, chunk rows × Lk) stay under this size (≈ half an L2).
constexpr int64_t kScoresBytes = int64_t(512) << 10;

size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}

bool isa_has(dnnl::cpu_isa isa, dnnl::cpu_isa want) {
  return (unsigned(isa) & unsigned(want)) == unsigned(want);
}

// Weights in the layouts primitives asked for (Weight::packed). When the first layout asked for
// is not the plain one, the plain copy's pages are handed back to the OS (madvise DONTNEED:
// w.t keeps its address, its contents read as zeros until written again), so a weight is held
// once, in the layout its kernel uses; further layouts are reordered from forms[0].
// Backend::update_weight rewrites w.t and drops the forms (clear_packed_weight).
struct PackedWeight {
  std::vector<std::pair<memory::desc, memory>> forms;
  bool plain_released = false;
};

namespace {

constexpr size_t kReleaseMinBytes = 64 << 10;  // smaller weights are not worth a syscall

// Returns the whole pages inside [p, p + bytes) to the OS.
void release_pages(void* p, size_t bytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(p) + page - 1) / page * page;
  const uintptr_t end = (uintptr_t(p) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

dnnl::algorithm eltwise_of(Act act) {
  switch (act) {
    case Act::ReLU:
      return dnnl::algorithm::eltwise_relu;
    case Act::SiLU:
      return dnnl::algorithm::eltwise_swish;
    case Act::GELU:
      return dnnl::algorithm::eltwise_gelu_erf;
    case Act::GELUTanh:
      return dnnl::algorithm::eltwise_gelu_tanh;
    case Act::Tanh:
      return dnnl::algorithm::eltwise_tanh;
    case Act::None:
      break;
  }
  fail("no oneDNN eltwise for activation ", act_name(act));
}

}  // namespace

dt dnnl_type(DType t, const char* what) {
  switch (t) {
    case DType::F32:
      return dt::f32;
    case DType::BF16:
      return dt::bf16;
    case DType::F16:
      break;
  }
  fail(what, ": f16 tensors are not supported by the CPU backend (f32 or bf16)");
}

dnnl::primitive_attr make_attr(Act act, const memory::desc* residual_md, bool as_sum) {
  dnnl::post_ops po;
  if (residual_md) {
    if (as_sum) {
      po.append_sum(1.f);
    } else {
      po.append_binary(dnnl::algorithm::binary_add, *residual_md);
    }
  }
  if (act != Act::None) po.append_eltwise(1.f, eltwise_of(act), act == Act::SiLU ? 1.f : 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  return attr;
}

dnnl::convolution_forward::primitive_desc conv_pd(const dnnl::engine& eng, const memory::desc& src,
                                                  int64_t O, int64_t KH, int64_t KW, bool bias,
                                                  const memory::desc& dst, Conv2dParams p, Act act,
                                                  const memory::desc* residual, bool as_sum) {
  const int64_t C = src.dims()[1];
  const memory::desc w_md({O, C, KH, KW}, src.data_type(), tag::any);
  const memory::desc b_md({O}, dt::f32, tag::a);
  const dnnl::primitive_attr attr = make_attr(act, residual, as_sum);
  const auto kind = dnnl::prop_kind::forward_inference;
  const auto algo = dnnl::algorithm::convolution_direct;
  const dnnl::convolution_forward::desc d =
      bias ? dnnl::convolution_forward::desc(kind, algo, src, w_md, b_md, dst, {p.stride, p.stride},
                                             {p.pad, p.pad}, {p.pad, p.pad})
           : dnnl::convolution_forward::desc(kind, algo, src, w_md, dst, {p.stride, p.stride},
                                             {p.pad, p.pad}, {p.pad, p.pad});
  return dnnl::convolution_forward::primitive_desc(d, attr, eng);
}

bool is_reference_impl(const char* impl) {
  return std::strncmp(impl, "ref", 3) == 0;
}

void check_status(dnnl_status_t s, const char* what) {
  SD_CHECK(s == dnnl_success, what, ": oneDNN execution failed with status ", int(s));
}

std::string dnnl_isa_name() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (isa_has(isa, dnnl::cpu_isa::avx512_core_amx)) return "avx512_core_amx";
  if (isa_has(isa, dnnl::cpu_isa::avx512_core_bf16)) return "avx512_core_bf16";
  if (isa_has(isa, dnnl::cpu_isa::avx512_core_vnni)) return "avx512_core_vnni";
  if (isa_has(isa, dnnl::cpu_isa::avx512_core)) return "avx512_core";
  if (isa_has(isa, dnnl::cpu_isa::avx2_vnni)) return "avx2_vnni";
  if (isa_has(isa, dnnl::cpu_isa::avx2)) return "avx2";
  return "pre-avx2";
}

bool dnnl_has_bf16() {
  return isa_has(dnnl::get_effective_cpu_isa(), dnnl::cpu_isa::avx512_core_bf16);
}

std::shared_ptr<void> new_packed_weight() {
  return std::make_shared<PackedWeight>();
}

void clear_packed_weight(const Weight& w) {
  if (!w.packed) return;
  auto* pw = static_cast<PackedWeight*>(w.packed.get());
  pw->forms.clear();
  pw->plain_released = false;
}

memory DnnlKernels::Impl::packed(const Weight& w, const memory::desc& user_md,
                                 const memory::desc& want) {
  if (!w.packed) w.packed = new_packed_weight();
  auto* pw = static_cast<PackedWeight*>(w.packed.get());
  for (auto& [md, mem] : pw->forms)
    if (md == want) return mem;
  memory source = pw->plain_released ? pw->forms.front().second : memory(user_md, eng, w.t.data());
  memory mem = source;
  if (want != source.get_desc()) {
    mem = memory(want, eng);
    dnnl::reorder(source, mem).execute(strm, source, mem);
    strm.wait();
    ++stats.weight_reorders;
  }
  pw->forms.emplace_back(want, mem);
  if (!pw->plain_released && want != user_md && pw->forms.size() == 1 &&
      w.t.nbytes() >= kReleaseMinBytes) {
    release_pages(w.t.data(), w.t.nbytes());
    pw->plain_released = true;
  }
  return mem;
}

void DnnlKernels::Impl::run(Prim& p, const char* what, void* src, const memory& weights,
                            const Weight* bias, const Tensor* residual, void* dst,
                            size_t dst_bytes) {
  p.src.set_data_handle(src);
  p.dst.set_data_handle(dst);
  dnnl_exec_arg_t args[5];
  int n = 0;
  args[n++] = {DNNL_ARG_SRC, p.src.get()};
  args[n++] = {DNNL_ARG_WEIGHTS, weights.get()};
  args[n++] = {DNNL_ARG_DST, p.dst.get()};
  if (bias) {
    p.bias.set_data_handle(bias->t.data());
    args[n++] = {DNNL_ARG_BIAS, p.bias.get()};
  }
  if (residual) {
    if (p.residual_as_sum) {
      if (residual->data() != dst) std::memcpy(dst, residual->data(), dst_bytes);
    } else {
      p.residual.set_data_handle(residual->data());
      args[n++] = {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, p.residual.get()};
    }
  }
  check_status(dnnl_primitive_execute(p.prim.get(), strm.get(), n, args), what);
}

DnnlKernels::DnnlKernels() : impl_(std::make_unique<Impl>()) {}
DnnlKernels::~DnnlKernels() = default;

void DnnlKernels::wait() {
  impl_->strm.wait();
}
DnnlStats DnnlKernels::stats() const {
  DnnlStats s = impl_->stats;
  s.cached_primitives = impl_->cache.size();
  return s;
}

// Layout choice. NHWC is kept where oneDNN has a brgemm kernel for it (AVX-512 and newer) and
// for 1x1 kernels; otherwise the convolution runs in the layout oneDNN prefers when asked with
// format_tag::any (nChw8c on AVX2), with the activations reordered at the edges. Measured on
// AVX2 (Zen, oneDNN 2.6, f32, conv3x3 320->320 at 64²): NHWC jit:avx2 ≈ 0.45x of nChw8c,
// while the two reorders cost ≈ 1% of the convolution.
void DnnlKernels::conv2d(const Tensor& x, const Weight& w, const Weight* bias, Conv2dParams p,
                         Act act, const Tensor* residual, Arena& arena, const Tensor& y) {
  const dt type = dnnl_type(x.dtype(), "conv2d");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const int64_t O = w.t.dim(0), KH = w.t.dim(2), KW = w.t.dim(3);
  const int64_t HO = y.dim(1), WO = y.dim(2);
  Key key;
  key.add(1).add(int64_t(type)).add(N).add(C).add(H).add(W).add(O).add(KH).add(KW);
  key.add(p.stride).add(p.pad).add(bias != nullptr).add(int64_t(act)).add(residual != nullptr);
  Impl& im = *impl_;
  const memory::desc user_w_md({O, C, KH, KW}, type, tag::oihw);
  auto it = im.cache.find(key);
  if (it == im.cache.end()) {
    const memory::desc src_md({N, C, H, W}, type, tag::nhwc),
        dst_md({N, O, HO, WO}, type, tag::nhwc);
    const memory::desc b_md({O}, dt::f32, tag::a);
    auto make_pd = [&](const memory::desc& s_md, const memory::desc& d_md, bool as_sum) {
      return conv_pd(im.eng, s_md, O, KH, KW, bias != nullptr, d_md, p, act,
                     residual ? &dst_md : nullptr, as_sum);
    };
    dnnl::convolution_forward::primitive_desc pd;
    bool as_sum = false;
    try {
      pd = make_pd(src_md, dst_md, false);
      // A residual as binary post-op avoids a copy, unless only a reference kernel takes it.
      if (residual && is_reference_impl(pd.impl_info_str())) {
        pd = make_pd(src_md, dst_md, true);
        as_sum = true;
      }
    } catch (const dnnl::error& e) {
      fail("conv2d: oneDNN has no ", dtype_name(x.dtype()), " convolution for x ", x.shape().str(),
           " weight ", w.t.shape().str(), " on this CPU (", dnnl_isa_name(), "): ", e.what());
    }
    Prim prim;
    const bool nhwc_native = std::strncmp(pd.impl_info_str(), "brg", 3) == 0 || KH * KW == 1;
    if (!nhwc_native) {
      // The residual goes through a sum post-op here: it is reordered into dst first.
      const memory::desc any_s({N, C, H, W}, type, tag::any), any_d({N, O, HO, WO}, type, tag::any);
      dnnl::convolution_forward::primitive_desc blocked;
      try {
        blocked = make_pd(any_s, any_d, true);
      } catch (const dnnl::error&) {
      }
      if (blocked && !is_reference_impl(blocked.impl_info_str()) &&
          (blocked.src_desc() != src_md || blocked.dst_desc() != dst_md)) {
        pd = blocked;
        as_sum = true;
        prim.src_reorder = pd.src_desc() != src_md;
        prim.dst_reorder = pd.dst_desc() != dst_md;
        prim.nhwc_src = memory(src_md, im.eng, nullptr);
        prim.nhwc_dst = memory(dst_md, im.eng, nullptr);
        if (prim.src_reorder)
          prim.to_src =
              dnnl::reorder(dnnl::reorder::primitive_desc(im.eng, src_md, im.eng, pd.src_desc()));
        if (prim.dst_reorder) {
          prim.from_dst =
              dnnl::reorder(dnnl::reorder::primitive_desc(im.eng, pd.dst_desc(), im.eng, dst_md));
          if (residual)
            prim.to_dst =
                dnnl::reorder(dnnl::reorder::primitive_desc(im.eng, dst_md, im.eng, pd.dst_desc()));
        }
      }
    }
    im.created(pd.impl_info_str());
    prim.prim = dnnl::convolution_forward(pd);
    prim.weights_md = pd.weights_desc();
    prim.src = memory(pd.src_desc(), im.eng, nullptr);
    prim.dst = memory(pd.dst_desc(), im.eng, nullptr);
    prim.bias = memory(b_md, im.eng, nullptr);
    prim.residual = memory(dst_md, im.eng, nullptr);
    prim.residual_as_sum = as_sum;
    it = im.cache.emplace(key, std::move(prim)).first;
  }
  Prim& prim = it->second;
  const memory weights = im.packed(w, user_w_md, prim.weights_md);
  if (!prim.src_reorder && !prim.dst_reorder) {
    im.run(prim, "conv2d", x.data(), weights, bias, residual, y.data(), y.nbytes());
    return;
  }
  // Reordered path: temporaries in the blocked layouts, residual pre-filled into dst (sum).
  auto reorder = [&](const dnnl::primitive& r, const memory& from, const memory& to) {
    const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from.get()}, {DNNL_ARG_TO, to.get()}};
    check_status(dnnl_primitive_execute(r.get(), im.strm.get(), 2, args), "conv2d reorder");
  };
  auto temp = [&](const memory& m) {
    return arena.tensor({int64_t((m.get_desc().get_size() + 3) / 4)}, DType::F32);
  };
  Tensor src_tmp = prim.src_reorder ? temp(prim.src) : x;
  Tensor dst_tmp = prim.dst_reorder ? temp(prim.dst) : y;
  if (prim.src_reorder) {
    prim.nhwc_src.set_data_handle(x.data());
    prim.src.set_data_handle(src_tmp.data());
    reorder(prim.to_src, prim.nhwc_src, prim.src);
  }
  if (residual && prim.dst_reorder) {
    prim.nhwc_dst.set_data_handle(residual->data());
    prim.dst.set_data_handle(dst_tmp.data());
    reorder(prim.to_dst, prim.nhwc_dst, prim.dst);
  }
  // run() copies the residual into an NHWC dst itself (sum post-op).
  im.run(prim, "conv2d", src_tmp.data(), weights, bias, prim.dst_reorder ? nullptr : residual,
         dst_tmp.data(), dst_tmp.nbytes());
  if (prim.dst_reorder) {
    prim.nhwc_dst.set_data_handle(y.data());
    prim.dst.set_data_handle(dst_tmp.data());
    reorder(prim.from_dst, prim.dst, prim.nhwc_dst);
  }
}

void DnnlKernels::linear(const Tensor& x, const Weight& w, const Weight* bias, Act act,
                         const Tensor* residual, const Tensor& y) {
  const dt type = dnnl_type(x.dtype(), "linear");
  const int64_t K = w.t.dim(1), N = w.t.dim(0), M = x.numel() / K;
  Key key;
  key.add(2).add(int64_t(type)).add(M).add(K).add(N);
  key.add(bias != nullptr).add(int64_t(act)).add(residual != nullptr);
  Impl& im = *impl_;
  const memory::desc user_w_md({K, N}, type, tag::ba);  // [out, in] row-major = K×N, ba
  auto it = im.cache.find(key);
  if (it == im.cache.end()) {
    const memory::desc src_md({M, K}, type, tag::ab), dst_md({M, N}, type, tag::ab);
    const memory::desc w_md({K, N}, type, tag::any), b_md({1, N}, dt::f32, tag::ab);
    auto make_pd = [&](bool as_sum) {
      const dnnl::primitive_attr attr = make_attr(act, residual ? &dst_md : nullptr, as_sum);
      const dnnl::matmul::desc d = bias ? dnnl::matmul::desc(src_md, w_md, b_md, dst_md)
                                        : dnnl::matmul::desc(src_md, w_md, dst_md);
      return dnnl::matmul::primitive_desc(d, attr, im.eng);
    };
    dnnl::matmul::primitive_desc pd;
    bool as_sum = false;
    try {
      pd = make_pd(false);
      if (residual && is_reference_impl(pd.impl_info_str())) {
        pd = make_pd(true);
        as_sum = true;
      }
    } catch (const dnnl::error& e) {
      fail("linear: oneDNN has no ", dtype_name(x.dtype()), " matmul for x ", x.shape().str(),
           " weight ", w.t.shape().str(), " on this CPU (", dnnl_isa_name(), "): ", e.what());
    }
    im.created(pd.impl_info_str());
    Prim prim;
    prim.prim = dnnl::matmul(pd);
    prim.weights_md = pd.weights_desc();
    prim.src = memory(src_md, im.eng, nullptr);
    prim.dst = memory(dst_md, im.eng, nullptr);
    prim.bias = memory(b_md, im.eng, nullptr);
    prim.residual = memory(dst_md, im.eng, nullptr);
    prim.residual_as_sum = as_sum;
    it = im.cache.emplace(key, std::move(prim)).first;
  }
  Prim& prim = it->second;
  const memory weights = im.packed(w, user_w_md, prim.weights_md);
  im.run(prim, "linear", x.data(), weights, bias, residual, y.data(), y.nbytes());
}

AttnPrims& DnnlKernels::Impl::attention_prims(dt type, int64_t H, int64_t D, int64_t m,
                                              int64_t LK) {
  Key key;
  key.add(3).add(int64_t(type)).add(H).add(D).add(m).add(LK);
  const int nthr = omp_get_max_threads();
  while (int(thread_streams.size()) < nthr) thread_streams.emplace_back(eng);
  auto it = attn_cache.find(key);
  if (it != attn_cache.end() && int(it->second.threads.size()) >= nthr) return it->second;
  if (it != attn_cache.end()) attn_cache.erase(it);  // the thread count grew: rebuild
  const int64_t HD = H * D;
  const memory::desc q_md({m, D}, type, {HD, 1}), k_md({D, LK}, type, {1, HD});
  const memory::desc s_md({m, LK}, dt::f32, {LK, 1}), p_md({m, LK}, type, {LK, 1});
  const memory::desc v_md({LK, D}, type, {HD, 1}), o_md({m, D}, type, {HD, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc qk_pd, pv_pd;
  try {
    qk_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(q_md, k_md, s_md), attr, eng);
    pv_pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(p_md, v_md, o_md), attr, eng);
  } catch (const dnnl::error& e) {
    fail("attention: oneDNN has no ", type == dt::bf16 ? "bf16" : "f32", " matmul for a [", m, ", ",
         D, "] x [", D, ", ", LK, "] head chunk on this CPU (", dnnl_isa_name(), "): ", e.what());
  }
  AttnPrims p;
  p.qk = dnnl::matmul(qk_pd);
  p.pv = dnnl::matmul(pv_pd);
  created(qk_pd.impl_info_str());
  created(pv_pd.impl_info_str());
  const memory::desc qk_scratch = qk_pd.scratchpad_desc(), pv_scratch = pv_pd.scratchpad_desc();
  p.qk_scratch = qk_scratch.get_size();
  p.pv_scratch = pv_scratch.get_size();
  for (int t = 0; t < nthr; ++t)
    p.threads.push_back({memory(q_md, eng, nullptr), memory(k_md, eng, nullptr),
                         memory(s_md, eng, nullptr), memory(qk_scratch, eng, nullptr),
                         memory(p_md, eng, nullptr), memory(v_md, eng, nullptr),
                         memory(o_md, eng, nullptr), memory(pv_scratch, eng, nullptr)});
  return attn_cache.emplace(key, std::move(p)).first->second;
}

void DnnlKernels::attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads,
                            bool causal, Arena& arena, const Tensor& out) {
  const dt type = dnnl_type(q.dtype(), "attention");
  const int64_t B = q.dim(0), LQ = q.dim(1), LK = k.dim(1), HD = q.dim(2), H = heads;
  const int64_t D = HD / H;
  const float scale = float(1.0 / std::sqrt(double(D)));
  int64_t chunk = attention_chunk_ > 0
                      ? attention_chunk_
                      : std::min<int64_t>(256, std::max<int64_t>(16, kScoresBytes / (LK * 4)));
  chunk = std::min(chunk, LQ);
  const int64_t chunks = (LQ + chunk - 1) / chunk, rest = LQ - (chunks - 1) * chunk;
  Impl& im = *impl_;
  // Primitives for full chunks and for the last one (created here, outside the parallel loop).
  AttnPrims& full = im.attention_prims(type, H, D, chunk, LK);
  AttnPrims& last = im.attention_prims(type, H, D, rest, LK);
  // Per-thread workspace from the arena: f32 scores, probabilities (bf16), two scratchpads.
  const size_t es = dtype_size(q.dtype());
  const size_t s_bytes = align64(size_t(chunk * LK) * 4);
  const size_t p_bytes = q.dtype() == DType::F32 ? 0 : align64(size_t(chunk * LK) * es);
  const size_t qk_bytes = align64(std::max(full.qk_scratch, last.qk_scratch));
  const size_t pv_bytes = align64(std::max(full.pv_scratch, last.pv_scratch));
  const size_t per_thread = s_bytes + p_bytes + qk_bytes + pv_bytes;
  const int nthr = omp_get_max_threads();
  Tensor work = arena.tensor({int64_t(per_thread / 4) * nthr}, DType::F32);

  const char* qp = static_cast<const char*>(q.data());
  const char* kp = static_cast<const char*>(k.data());
  const char* vp = static_cast<const char*>(v.data());
  char* op = static_cast<char*>(out.data());
  const int64_t items = B * H * chunks;
  dnnl_status_t status = dnnl_success;
#pragma omp parallel num_threads(nthr)
  {
    const int t = omp_get_thread_num();
    char* base = static_cast<char*>(work.data()) + size_t(t) * per_thread;
    float* scores = reinterpret_cast<float*>(base);
    void* probs = p_bytes ? base + s_bytes : base;
    const dnnl::stream& strm = im.thread_streams[size_t(t)];
    // Dynamic: items are independent (same result whichever thread runs one), and a core
    // taken by other work (decoding, encoding) then delays less than its static share.
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t b = it / (H * chunks), h = it / chunks % H, c = it % chunks;
      const int64_t q0 = c * chunk;
      AttnPrims& prims = c + 1 == chunks ? last : full;
      AttnPrims::PerThread& m = prims.threads[size_t(t)];
      m.q.set_data_handle(const_cast<char*>(qp) + size_t((b * LQ + q0) * HD + h * D) * es);
      m.k.set_data_handle(const_cast<char*>(kp) + size_t(b * LK * HD + h * D) * es);
      m.s.set_data_handle(scores);
      m.qk_scratch.set_data_handle(base + s_bytes + p_bytes);
      m.p.set_data_handle(probs);
      m.v.set_data_handle(const_cast<char*>(vp) + size_t(b * LK * HD + h * D) * es);
      m.o.set_data_handle(op + size_t((b * LQ + q0) * HD + h * D) * es);
      m.pv_scratch.set_data_handle(base + s_bytes + p_bytes + qk_bytes);
      const dnnl_exec_arg_t qk_args[4] = {{DNNL_ARG_SRC, m.q.get()},
                                          {DNNL_ARG_WEIGHTS, m.k.get()},
                                          {DNNL_ARG_DST, m.s.get()},
                                          {DNNL_ARG_SCRATCHPAD, m.qk_scratch.get()}};
      const dnnl_exec_arg_t pv_args[4] = {{DNNL_ARG_SRC, m.p.get()},
                                          {DNNL_ARG_WEIGHTS, m.v.get()},
                                          {DNNL_ARG_DST, m.o.get()},
                                          {DNNL_ARG_SCRATCHPAD, m.pv_scratch.get()}};
      const int64_t rows = c + 1 == chunks ? rest : chunk;
      dnnl_status_t st = dnnl_primitive_execute(prims.qk.get(), strm.get(), 4, qk_args);
      if (st == dnnl_success) {
        attention_softmax(scores, rows, LK, scale, causal, q0, probs, q.dtype());
        st = dnnl_primitive_execute(prims.pv.get(), strm.get(), 4, pv_args);
      }
      if (st != dnnl_success) {
#pragma omp critical(sd_attention_status)
        status = st;
      }
    }
  }
  check_status(status, "attention");
}

}  // namespace sd::cpu
