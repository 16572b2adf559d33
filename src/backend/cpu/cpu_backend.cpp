#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <oneapi/dnnl/dnnl.hpp>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/dnnl_kernels.h"
#include "backend/cpu/flash_attention.h"

namespace sd {

namespace {

Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r[-1] = last;
  return r;
}

void check_cpu(const Tensor& t, const char* what, const char* name) {
  SD_CHECK(t.defined() && t.device() == Device::CPU && t.is_contiguous(), what, ": ", name, " ",
           t.shape().str(), " must be a contiguous CPU tensor");
}

DType choose_dtype(const std::string& requested) {
  if (requested == "auto") return cpu::dnnl_has_bf16() ? DType::BF16 : DType::F32;
  const DType t = parse_dtype(requested);
  SD_CHECK(t != DType::F16, "the CPU backend computes in f32 or bf16, not f16 (dtype '", requested,
           "')");
  SD_CHECK(t != DType::BF16 || cpu::dnnl_has_bf16(),
           "dtype bf16 needs a CPU with AVX512-BF16; this one offers oneDNN ISA ",
           cpu::dnnl_isa_name(), " (use dtype f32 or auto)");
  return t;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(DType compute, int threads) : Backend(compute), threads_(threads) {
    SD_CHECK(threads >= 0, "threads must be >= 0 (0 = all cores), got ", threads);
    use_threads();
    init_arena(Device::CPU);
  }

  Device device() const override { return Device::CPU; }
  std::string description() const override {
    const dnnl_version_t* v = dnnl_version();
    return detail::concat("cpu: oneDNN ", v->major, ".", v->minor, ".", v->patch, ", ",
                          cpu::dnnl_isa_name(), ", ", dtype_name(compute_dtype()), ", ",
                          omp_get_max_threads(), " threads, attention ", attention_name());
  }
  CpuBackendStats stats() const {
    const cpu::DnnlStats s = dnnl_.stats();
    return CpuBackendStats{s.primitives_created,
                           s.weight_reorders,
                           s.cached_primitives,
                           s.last_impl,
                           flops_.load(std::memory_order_relaxed),
                           host_copy_bytes_.load(std::memory_order_relaxed)};
  }

  void set_attention_chunk(int64_t rows) { dnnl_.set_attention_chunk(rows); }
  // The kernel attention() runs for head dims up to kCpuFusedAttentionMaxHeadDim.
  const char* attention_name() const {
    if (attention_kernel_ == Attn::OneDnn) return "onednn";
    return cpu::flash_isa_name(attention_kernel_ == Attn::Fused ? fused_isa_ : best_isa_);
  }
  void set_attention_kernel(const std::string& kernel) {
    if (kernel == "auto" || kernel == "onednn") {
      attention_kernel_ = kernel == "auto" ? Attn::Auto : Attn::OneDnn;
      return;
    }
    for (cpu::FlashIsa isa : {cpu::FlashIsa::Generic, cpu::FlashIsa::Avx2, cpu::FlashIsa::Avx512}) {
      if (kernel != cpu::flash_isa_name(isa)) continue;
      SD_CHECK(cpu::flash_isa_available(isa), "attention kernel '", kernel,
               "' is not available on this CPU or build");
      attention_kernel_ = Attn::Fused;
      fused_isa_ = isa;
      return;
    }
    fail("unknown attention kernel '", kernel, "' (auto, onednn, generic, avx2, avx512)");
  }

  StorageRef allocate(size_t bytes) override { return host_storage(bytes); }

  void copy_from_host(const Tensor& host, const Tensor& dst) override {
    check_cpu(host, "copy_from_host", "source");
    check_cpu(dst, "copy_from_host", "destination");
    SD_CHECK(host.numel() == dst.numel(), "copy_from_host: ", host.shape().str(), " into ",
             dst.shape().str());
    host_copy_bytes_.fetch_add(dst.nbytes(), std::memory_order_relaxed);
    cpu::cast(host, dst);
  }
  void copy_to_host(const Tensor& src, const Tensor& host) override {
    check_cpu(src, "copy_to_host", "source");
    check_cpu(host, "copy_to_host", "destination");
    SD_CHECK(host.numel() == src.numel(), "copy_to_host: ", src.shape().str(), " into ",
             host.shape().str());
    host_copy_bytes_.fetch_add(host.nbytes(), std::memory_order_relaxed);
    cpu::cast(src, host);
  }
  void synchronize() override { dnnl_.wait(); }

  Weight conv_weight(const Tensor& oihw) override {
    SD_CHECK(oihw.rank() == 4, "conv weight must be [out, in, kh, kw], got ", oihw.shape().str());
    Weight w = convert_weight(oihw, compute_dtype());
    w.packed = cpu::new_packed_weight();
    return w;
  }
  Weight linear_weight(const Tensor& out_in) override {
    SD_CHECK(out_in.rank() == 2, "linear weight must be [out, in], got ", out_in.shape().str());
    Weight w = convert_weight(out_in, compute_dtype());
    w.packed = cpu::new_packed_weight();
    return w;
  }
  Weight vector(const Tensor& v) override { return convert_weight(v, DType::F32); }
  void update_weight(const Weight& w, const Tensor& host) override {
    check_cpu(host, "update_weight", "source");
    SD_CHECK(w.t.defined() && host.shape() == w.t.shape(), "update_weight: new values ",
             host.shape().str(), " for a weight of shape ", w.t.defined() ? w.t.shape().str() : "");
    dnnl_.wait();
    cpu::cast(host, w.t);
    cpu::clear_packed_weight(w);
  }

  Tensor conv2d(const Tensor& x, const Weight& w, const Weight* bias, Conv2dParams p, Act act,
                const Tensor* residual) override {
    use_threads();
    check_cpu(x, "conv2d", "x");
    const Shape out = conv_out_shape(x.shape(), x.dtype(), w, bias, p, "conv2d");
    Tensor y = alloc(out, x.dtype());
    check_residual(residual, y, "conv2d");
    dnnl_.conv2d(x, w, bias, p, act, residual, arena(), y);
    count_conv_flops(out, w);
    return y;
  }
  bool conv_chain_fused = true;  // cpu_set_conv_chain_fused
  Tensor conv_chain(const Tensor& x, const std::vector<ChainStep>& steps) override {
    if (!conv_chain_fused) return Backend::conv_chain(x, steps);
    use_threads();
    check_cpu(x, "conv_chain", "x");
    check_conv_chain(steps, chain_last_use_);
    std::vector<Shape>& shapes = chain_shapes_;  // of each output, to check residuals
    shapes.assign(1, x.shape());
    for (size_t i = 0; i < steps.size(); ++i) {
      const ChainStep& s = steps[i];
      char what[40];
      std::snprintf(what, sizeof what, "conv_chain step %zu", i);
      const Shape in = shapes.back();
      if (s.w) {
        shapes.push_back(conv_out_shape(in, x.dtype(), *s.w, s.bias, s.p, what));
        count_conv_flops(shapes.back(), *s.w);
      } else {
        SD_CHECK(in.rank == 4, what, ": upsample of ", in.str(), ", not NHWC");
        shapes.push_back(Shape{in[0], 2 * in[1], 2 * in[2], in[3]});
      }
      SD_CHECK(s.residual < 0 || shapes[size_t(s.residual)] == shapes.back(), what,
               ": residual (output ", s.residual, ") ",
               s.residual < 0 ? "" : shapes[size_t(s.residual)].str(), " does not match ",
               shapes.back().str());
    }
    Tensor y = alloc(shapes.back(), x.dtype());
    dnnl_.conv_chain(x, steps, chain_last_use_, arena(), y);
    return y;
  }

  Tensor linear(const Tensor& x, const Weight& w, const Weight* bias, Act act,
                const Tensor* residual) override {
    use_threads();
    check_cpu(x, "linear", "x");
    SD_CHECK(w.t.rank() == 2 && x.rank() >= 1 && x.dim(-1) == w.t.dim(1), "linear: x ",
             x.shape().str(), " does not match weight ", w.t.shape().str(), " ([out, in])");
    SD_CHECK(x.dtype() == w.t.dtype(), "linear: x is ", dtype_name(x.dtype()), ", weight ",
             dtype_name(w.t.dtype()));
    check_bias(bias, w.t.dim(0), "linear");
    Tensor y = alloc(with_last(x.shape(), w.t.dim(0)), x.dtype());
    check_residual(residual, y, "linear");
    dnnl_.linear(x, w, bias, act, residual, y);
    count_flops(2 * (x.numel() / x.dim(-1)) * w.t.dim(1) * w.t.dim(0));
    return y;
  }

  Tensor group_norm(const Tensor& x, int groups, const Weight& gamma, const Weight& beta, float eps,
                    Act act) override {
    use_threads();
    check_cpu(x, "group_norm", "x");
    check_affine(gamma, beta, x.dim(-1), "group_norm");
    Tensor y = alloc(x.shape(), x.dtype());
    cpu::group_norm(x, groups, gamma.t.data_as<float>(), beta.t.data_as<float>(), eps, act, y);
    return y;
  }
  Tensor layer_norm(const Tensor& x, const Weight& gamma, const Weight& beta, float eps) override {
    use_threads();
    check_cpu(x, "layer_norm", "x");
    check_affine(gamma, beta, x.dim(-1), "layer_norm");
    Tensor y = alloc(x.shape(), x.dtype());
    cpu::layer_norm(x, gamma.t.data_as<float>(), beta.t.data_as<float>(), eps, y);
    return y;
  }
  Tensor activate(const Tensor& x, Act act) override {
    use_threads();
    check_cpu(x, "activate", "x");
    Tensor y = alloc(x.shape(), x.dtype());
    cpu::activate(x, act, y);
    return y;
  }
  Tensor geglu(const Tensor& x) override {
    use_threads();
    check_cpu(x, "geglu", "x");
    SD_CHECK(x.rank() >= 1 && x.dim(-1) % 2 == 0, "geglu: last dimension of ", x.shape().str(),
             " is not even");
    Tensor y = alloc(with_last(x.shape(), x.dim(-1) / 2), x.dtype());
    cpu::geglu(x, y);
    return y;
  }
  Tensor softmax(const Tensor& x, float scale) override {
    use_threads();
    check_cpu(x, "softmax", "x");
    Tensor y = alloc(x.shape(), x.dtype());
    cpu::softmax(x, scale, y);
    return y;
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads,
                   bool causal) override {
    use_threads();
    check_cpu(q, "attention", "q");
    check_cpu(k, "attention", "k");
    check_cpu(v, "attention", "v");
    SD_CHECK(q.rank() == 3 && k.rank() == 3 && v.shape() == k.shape() && q.dim(0) == k.dim(0) &&
                 q.dim(2) == k.dim(2) && heads > 0 && q.dim(2) % heads == 0,
             "attention: q ", q.shape().str(), ", k ", k.shape().str(), ", v ", v.shape().str(),
             " with ", heads, " heads (expected [B, L, H*D] each)");
    SD_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), "attention: q, k, v dtypes ",
             dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));
    Tensor out = alloc(q.shape(), q.dtype());
    const int64_t D = q.dim(2) / heads;
    // Two products of Lq × Lk × D per head; causal: the half of the scores that are kept.
    count_flops(4 * q.dim(0) * q.dim(1) * k.dim(1) * q.dim(2) / (causal ? 2 : 1));
    if (attention_kernel_ == Attn::OneDnn ||
        (attention_kernel_ == Attn::Auto && D > kCpuFusedAttentionMaxHeadDim)) {
      dnnl_.attention(q, k, v, heads, causal, arena(), out);
      return out;
    }
    cpu::FlashArgs a;
    a.q = q.data(), a.k = k.data(), a.v = v.data(), a.out = out.data();
    a.batch = q.dim(0), a.lq = q.dim(1), a.lk = k.dim(1), a.heads = heads, a.head_dim = D;
    a.q_stride = a.k_stride = a.v_stride = a.out_stride = q.dim(2);
    a.causal = causal;
    a.dtype = q.dtype();
    const cpu::FlashIsa isa = attention_kernel_ == Attn::Fused ? fused_isa_ : best_isa_;
    const int threads = omp_get_max_threads();
    const size_t bytes = cpu::flash_attention_workspace(a, isa, threads);
    Tensor work = arena().tensor({int64_t((bytes + 3) / 4)}, DType::F32);
    cpu::flash_attention(a, isa, threads, work.data());
    return out;
  }
  Tensor upsample_nearest2x(const Tensor& x) override {
    use_threads();
    check_cpu(x, "upsample_nearest2x", "x");
    SD_CHECK(x.rank() == 4, "upsample_nearest2x: x ", x.shape().str(), " is not NHWC");
    Tensor y = alloc({x.dim(0), 2 * x.dim(1), 2 * x.dim(2), x.dim(3)}, x.dtype());
    cpu::upsample_nearest2x(x, y);
    return y;
  }
  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    use_threads();
    check_cpu(a, "binary", "a");
    check_cpu(b, "binary", "b");
    Shape out;
    out.rank = std::max(a.rank(), b.rank());
    for (int i = 1; i <= out.rank; ++i) {
      const int64_t da = i <= a.rank() ? a.dim(-i) : 1, db = i <= b.rank() ? b.dim(-i) : 1;
      SD_CHECK(da == db || da == 1 || db == 1, "binary: shapes ", a.shape().str(), " and ",
               b.shape().str(), " do not broadcast");
      out[-i] = da == 1 ? db : da;
    }
    Tensor y = alloc(out, a.dtype());
    cpu::binary(op, a, b, y);
    return y;
  }
  Tensor scale(const Tensor& x, float alpha, float beta) override {
    use_threads();
    check_cpu(x, "scale", "x");
    Tensor y = alloc(x.shape(), x.dtype());
    cpu::scale(x, alpha, beta, y);
    return y;
  }
  Tensor concat_channels(const Tensor& a, const Tensor& b) override {
    use_threads();
    check_cpu(a, "concat_channels", "a");
    check_cpu(b, "concat_channels", "b");
    bool same_lead = a.rank() == b.rank() && a.rank() >= 1;
    for (int i = 0; same_lead && i + 1 < a.rank(); ++i) same_lead = a.dim(i) == b.dim(i);
    SD_CHECK(same_lead && a.dtype() == b.dtype(), "concat_channels: ", a.shape().str(), " ",
             dtype_name(a.dtype()), " and ", b.shape().str(), " ", dtype_name(b.dtype()),
             " differ outside the last dimension");
    Tensor y = alloc(with_last(a.shape(), a.dim(-1) + b.dim(-1)), a.dtype());
    cpu::concat_channels(a, b, y);
    return y;
  }
  Tensor cast(const Tensor& x, DType dtype) override {
    use_threads();
    check_cpu(x, "cast", "x");
    Tensor y = alloc(x.shape(), dtype);
    cpu::cast(x, y);
    return y;
  }

 private:
  // OpenMP's thread count is per calling thread: a kernel called from a pipeline thread must
  // set it again, or it runs with all cores.
  void use_threads() const {
    if (threads_ > 0 && omp_get_max_threads() != threads_) omp_set_num_threads(threads_);
  }
  int threads_ = 0;
  void count_flops(int64_t n) { flops_.fetch_add(uint64_t(n), std::memory_order_relaxed); }
  void count_conv_flops(const Shape& out, const Weight& w) {
    count_flops(2 * out[0] * out[1] * out[2] * w.t.dim(0) * w.t.dim(1) * w.t.dim(2) * w.t.dim(3));
  }
  // The NHWC output shape of conv(x, w) with stride / padding p; checks x, w and bias.
  static Shape conv_out_shape(const Shape& x, DType dtype, const Weight& w, const Weight* bias,
                              Conv2dParams p, const char* what) {
    SD_CHECK(x.rank == 4 && w.t.rank() == 4 && w.t.dim(1) == x[3], what, ": x ", x.str(),
             " (NHWC) does not match weight ", w.t.shape().str(), " (OIHW)");
    SD_CHECK(dtype == w.t.dtype(), what, ": x is ", dtype_name(dtype), ", weight ",
             dtype_name(w.t.dtype()));
    SD_CHECK(p.stride >= 1 && p.pad >= 0, what, ": stride ", p.stride, ", pad ", p.pad);
    const int64_t HO = (x[1] + 2 * p.pad - w.t.dim(2)) / p.stride + 1;
    const int64_t WO = (x[2] + 2 * p.pad - w.t.dim(3)) / p.stride + 1;
    SD_CHECK(HO > 0 && WO > 0, what, ": kernel ", w.t.shape().str(), " larger than padded x ",
             x.str());
    check_bias(bias, w.t.dim(0), what);
    return Shape{x[0], HO, WO, w.t.dim(0)};
  }
  std::vector<int> chain_last_use_;
  std::vector<Shape> chain_shapes_;
  std::atomic<uint64_t> flops_{0};
  std::atomic<uint64_t> host_copy_bytes_{0};
  enum class Attn { Auto, OneDnn, Fused };
  Attn attention_kernel_ = Attn::Auto;
  cpu::FlashIsa fused_isa_ = cpu::FlashIsa::Generic;
  const cpu::FlashIsa best_isa_ = cpu::flash_best_isa();

  Weight convert_weight(const Tensor& host, DType dtype) {
    check_cpu(host, "weight upload", "tensor");
    Weight w;
    w.t = empty(host.shape(), dtype);
    cpu::cast(host, w.t);
    return w;
  }
  static void check_bias(const Weight* bias, int64_t n, const char* what) {
    SD_CHECK(!bias || (bias->t.dtype() == DType::F32 && bias->t.numel() == n), what, ": bias ",
             bias ? bias->t.shape().str() : "", " ", bias ? dtype_name(bias->t.dtype()) : "",
             " is not ", n, " f32 values");
  }
  static void check_residual(const Tensor* r, const Tensor& y, const char* what) {
    if (!r) return;
    check_cpu(*r, what, "residual");
    SD_CHECK(r->shape() == y.shape() && r->dtype() == y.dtype(), what, ": residual ",
             r->shape().str(), " ", dtype_name(r->dtype()), " does not match the output ",
             y.shape().str(), " ", dtype_name(y.dtype()));
  }
  static void check_affine(const Weight& gamma, const Weight& beta, int64_t c, const char* what) {
    SD_CHECK(gamma.t.dtype() == DType::F32 && beta.t.dtype() == DType::F32 &&
                 gamma.t.numel() == c && beta.t.numel() == c,
             what, ": gamma ", gamma.t.shape().str(), " and beta ", beta.t.shape().str(),
             " must be ", c, " f32 values");
  }

  mutable cpu::DnnlKernels dnnl_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  auto backend = std::make_unique<CpuBackend>(choose_dtype(options.dtype), options.threads);
  // A user's override of the attention kernel (to compare kernels, or to fall back to oneDNN).
  if (const char* kernel = std::getenv("STREAMDIFF_CPU_ATTENTION"); kernel && *kernel) {
    try {
      backend->set_attention_kernel(kernel);
    } catch (const Error& e) {
      fail("STREAMDIFF_CPU_ATTENTION: ", e.what());
    }
  }
  return backend;
}

CpuBackendStats cpu_backend_stats(const Backend& backend) {
  const auto* cpu = dynamic_cast<const CpuBackend*>(&backend);
  SD_CHECK(cpu, "cpu_backend_stats: the backend is not the CPU backend (", backend.description(),
           ")");
  return cpu->stats();
}

void cpu_set_attention_chunk_rows(Backend& backend, int64_t rows) {
  auto* cpu = dynamic_cast<CpuBackend*>(&backend);
  SD_CHECK(cpu, "cpu_set_attention_chunk_rows: the backend is not the CPU backend (",
           backend.description(), ")");
  cpu->set_attention_chunk(rows);
}

void cpu_set_attention_kernel(Backend& backend, const std::string& kernel) {
  auto* cpu = dynamic_cast<CpuBackend*>(&backend);
  SD_CHECK(cpu, "cpu_set_attention_kernel: the backend is not the CPU backend (",
           backend.description(), ")");
  cpu->set_attention_kernel(kernel);
}

void cpu_set_conv_chain_fused(Backend& backend, bool fused) {
  auto* cpu = dynamic_cast<CpuBackend*>(&backend);
  SD_CHECK(cpu, "cpu_set_conv_chain_fused: the backend is not the CPU backend (",
           backend.description(), ")");
  cpu->conv_chain_fused = fused;
}

bool cpu_has_native_bf16() {
  return cpu::dnnl_has_bf16();
}

}  // namespace sd
