// Backend::conv_chain on the CPU: a run of convolutions (and nearest 2x upsamples) whose
// intermediates stay in the layout oneDNN's convolutions prefer. conv2d alone must hand back
// NHWC, so on CPUs without a fast NHWC kernel (AVX2: nChw8c) each call reorders its input in, its
// output out and a residual in: at TAESD's 64 channels and 512² that is three passes over 64 MiB
// around a 130 ms convolution. In a chain only the first input and the last output change layout.
//
// Per convolution step: the primitive is made (once, cached) as conv2d would, NHWC where oneDNN has
// an NHWC kernel (brgemm, 1x1), else with src/dst format_tag::any. An input in another layout
// than the primitive's src is reordered into a temporary; a residual in another layout than its
// dst likewise. An upsample works in NHWC and in nChw8c / nChw16c directly (both are NHWC-like:
// per block of channels, rows of pixels), otherwise on an NHWC copy.
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dnnl_impl.h"
#include "backend/cpu/dnnl_kernels.h"

namespace sd::cpu {

namespace {

memory::desc nhwc_md(int64_t n, int64_t c, int64_t h, int64_t w, dt type) {
  return memory::desc({n, c, h, w}, type, tag::nhwc);
}

// The channel block of md when it is nChw8c or nChw16c without padding, else 0.
int64_t channel_block(const memory::desc& md) {
  const memory::dims d = md.dims();
  for (auto [t, b] : {std::pair{tag::nChw8c, int64_t(8)}, std::pair{tag::nChw16c, int64_t(16)}})
    if (d[1] % b == 0 && md == memory::desc(d, md.data_type(), t)) return b;
  return 0;
}

// An arena temporary of md's size, and md's dims.
Tensor temporary(Arena& arena, const memory::desc& md) {
  return arena.tensor({int64_t((md.get_size() + 3) / 4)}, DType::F32);
}

struct Chain {
  DnnlKernels::Impl& im;
  Arena& arena;
  DType dtype;
  dt type;

  // `v` in layout `want`: itself, or a reordered temporary.
  ChainValue in_layout(const ChainValue& v, const memory::desc& want) {
    if (v.md == want) return v;
    ChainValue r{temporary(arena, want), want};
    memory from(v.md, im.eng, v.t.data()), to(want, im.eng, r.t.data());
    dnnl::reorder(from, to).execute(im.strm, from, to);
    return r;
  }

  // The cached primitive of a convolution step on input dims d (NCHW order).
  Prim& conv_prim(const memory::dims& d, const ChainStep& s, bool residual) {
    const int64_t N = d[0], C = d[1], H = d[2], W = d[3];
    const int64_t O = s.w->t.dim(0), KH = s.w->t.dim(2), KW = s.w->t.dim(3);
    const int64_t HO = (H + 2 * s.p.pad - KH) / s.p.stride + 1;
    const int64_t WO = (W + 2 * s.p.pad - KW) / s.p.stride + 1;
    Key key;
    key.add(4).add(int64_t(type)).add(N).add(C).add(H).add(W).add(O).add(KH).add(KW);
    key.add(s.p.stride).add(s.p.pad).add(s.bias != nullptr).add(int64_t(s.act)).add(residual);
    auto it = im.cache.find(key);
    if (it != im.cache.end()) return it->second;
    const memory::desc src = nhwc_md(N, C, H, W, type), dst = nhwc_md(N, O, HO, WO, type);
    const memory::desc any_s({N, C, H, W}, type, tag::any), any_d({N, O, HO, WO}, type, tag::any);
    auto make = [&](const memory::desc& sm, const memory::desc& dm, bool as_sum) {
      return conv_pd(im.eng, sm, O, KH, KW, s.bias != nullptr, dm, s.p, s.act,
                     residual ? &dm : nullptr, as_sum);
    };
    dnnl::convolution_forward::primitive_desc pd;
    bool as_sum = false;
    try {
      pd = make(src, dst, false);
      const bool nhwc_native = std::strncmp(pd.impl_info_str(), "brg", 3) == 0 || KH * KW == 1;
      if (!nhwc_native) {
        // The preferred layouts, then the residual as a binary post-op in dst's layout (no
        // copy), or as a sum over dst where only a reference kernel would take the binary.
        const dnnl::convolution_forward::primitive_desc any = make(any_s, any_d, residual);
        if (!is_reference_impl(any.impl_info_str())) {
          pd = any, as_sum = residual;
          if (residual) {
            auto binary = make(any.src_desc(), any.dst_desc(), false);
            if (!is_reference_impl(binary.impl_info_str())) pd = binary, as_sum = false;
          }
        }
      }
      if (residual && is_reference_impl(pd.impl_info_str()) && !as_sum)
        pd = make(pd.src_desc(), pd.dst_desc(), true), as_sum = true;
    } catch (const dnnl::error& e) {
      fail("conv_chain: oneDNN has no ", dtype_name(dtype), " convolution for x [", N, ", ", H,
           ", ", W, ", ", C, "] weight ", s.w->t.shape().str(), " on this CPU (", dnnl_isa_name(),
           "): ", e.what());
    }
    im.created(pd.impl_info_str());
    Prim prim;
    prim.prim = dnnl::convolution_forward(pd);
    prim.weights_md = pd.weights_desc();
    prim.src = memory(pd.src_desc(), im.eng, nullptr);
    prim.dst = memory(pd.dst_desc(), im.eng, nullptr);
    prim.bias = memory(memory::desc({O}, dt::f32, tag::a), im.eng, nullptr);
    prim.residual = memory(pd.dst_desc(), im.eng, nullptr);
    prim.residual_as_sum = as_sum;
    return im.cache.emplace(key, std::move(prim)).first->second;
  }

  // One convolution step; writes into `final` when it is the last step and `final`'s NHWC is
  // the primitive's dst layout.
  ChainValue conv(const ChainValue& in, const ChainStep& s, const ChainValue* res,
                  const Tensor* final) {
    Prim& prim = conv_prim(in.md.dims(), s, res != nullptr);
    const memory::desc src_md = prim.src.get_desc(), dst_md = prim.dst.get_desc();
    const ChainValue x = in_layout(in, src_md);
    const memory::dims od = dst_md.dims();
    const bool direct = final && dst_md == nhwc_md(od[0], od[1], od[2], od[3], type);
    ChainValue y{direct ? *final : temporary(arena, dst_md), dst_md};
    Tensor r;
    if (res) r = in_layout(*res, dst_md).t;
    const memory::desc user_w({s.w->t.dim(0), s.w->t.dim(1), s.w->t.dim(2), s.w->t.dim(3)}, type,
                              tag::oihw);
    const memory weights = im.packed(*s.w, user_w, prim.weights_md);
    im.run(prim, "conv_chain", x.t.data(), weights, s.bias, res ? &r : nullptr, y.t.data(),
           dst_md.get_size());
    return y;
  }

  // Nearest 2x upsample in NHWC or a plain channel-blocked layout (as NHWC over blocks).
  ChainValue upsample(const ChainValue& in) {
    const memory::dims d = in.md.dims();
    const int64_t N = d[0], C = d[1], H = d[2], W = d[3];
    const int64_t b = channel_block(in.md);
    const ChainValue x = b ? in : in_layout(in, nhwc_md(N, C, H, W, type));
    const int64_t rows = b ? N * (C / b) : N, ch = b ? b : C;
    const memory::desc out_md =
        b ? memory::desc({N, C, 2 * H, 2 * W}, type, b == 8 ? tag::nChw8c : tag::nChw16c)
          : nhwc_md(N, C, 2 * H, 2 * W, type);
    ChainValue y{temporary(arena, out_md), out_md};
    im.strm.wait();  // the kernel below runs outside the oneDNN stream
    upsample_nearest2x(Tensor(Shape{rows, H, W, ch}, dtype, Device::CPU, x.t.data()),
                       Tensor(Shape{rows, 2 * H, 2 * W, ch}, dtype, Device::CPU, y.t.data()));
    return y;
  }
};

}  // namespace

void DnnlKernels::conv_chain(const Tensor& x, const std::vector<ChainStep>& steps,
                             const std::vector<int>& last_use, Arena& arena, const Tensor& y) {
  Impl& im = *impl_;
  Chain chain{im, arena, x.dtype(), dnnl_type(x.dtype(), "conv_chain")};
  std::vector<ChainValue>& v = im.chain_values;
  v.assign(steps.size() + 1, ChainValue{});
  v[0] = {x, nhwc_md(x.dim(0), x.dim(3), x.dim(1), x.dim(2), chain.type)};
  for (size_t i = 0; i < steps.size(); ++i) {
    const ChainStep& s = steps[i];
    const ChainValue* res = s.residual >= 0 ? &v[size_t(s.residual)] : nullptr;
    const Tensor* final = i + 1 == steps.size() ? &y : nullptr;
    v[i + 1] = s.w ? chain.conv(v[i], s, res, final) : chain.upsample(v[i]);
    for (size_t k = 0; k <= i; ++k)
      if (last_use[k] <= int(i)) v[k] = ChainValue{};  // its memory goes back to the arena
  }
  const ChainValue& out = v.back();
  if (out.t.data() != y.data()) {
    memory from(out.md, im.eng, out.t.data());
    memory to(nhwc_md(y.dim(0), y.dim(3), y.dim(1), y.dim(2), chain.type), im.eng, y.data());
    dnnl::reorder(from, to).execute(im.strm, from, to);
  }
  v.assign(v.size(), ChainValue{});
}

}  // namespace sd::cpu
