// The CUDA backend: device memory, transfers and kernels, all ordered on one stream.
// Matrix products run on cuBLASLt (lt_matmul.h); the other kernels are our own (*.cu).
// conv2d and attention are not implemented yet and say so when called.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/lt_matmul.h"

namespace sd {

namespace {

void check_device_tensor(const Tensor& t, const char* op, const char* name) {
  SD_CHECK(t.defined(), "CUDA ", op, ": ", name, " is undefined");
  SD_CHECK(t.device() == Device::CUDA, "CUDA ", op, ": ", name, " ", t.shape().str(), " is on the ",
           device_name(t.device()), ", not the GPU");
  SD_CHECK(t.is_contiguous(), "CUDA ", op, ": ", name, " ", t.shape().str(), " is not contiguous");
  SD_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16, "CUDA ", op, ": ", name, " ",
           t.shape().str(), " is ", dtype_name(t.dtype()), " (kernels take f32 or bf16)");
}

void check_vector(const Weight& w, int64_t n, const char* op, const char* name) {
  SD_CHECK(
      w.defined() && w.t.device() == Device::CUDA && w.t.dtype() == DType::F32 && w.t.numel() == n,
      "CUDA ", op, ": ", name, " must be an f32 GPU vector of ", n, " elements, got ",
      w.t.shape().str(), " ", dtype_name(w.t.dtype()), " on the ", device_name(w.t.device()));
}

// numpy broadcasting of two shapes, aligned at the right.
Shape broadcast_shape(const Shape& a, const Shape& b) {
  Shape s;
  s.rank = std::max(a.rank, b.rank);
  for (int i = 1; i <= s.rank; ++i) {
    const int64_t da = i <= a.rank ? a.dims[a.rank - i] : 1;
    const int64_t db = i <= b.rank ? b.dims[b.rank - i] : 1;
    SD_CHECK(da == db || da == 1 || db == 1, "CUDA binary: shapes ", a.str(), " and ", b.str(),
             " do not broadcast");
    s.dims[s.rank - i] = da == 1 ? db : da;
  }
  return s;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(DType compute)
      : Backend(compute),
        stream_(std::make_shared<cuda::StreamOwner>(cuda::device_status().memory_pools)),
        lt_(std::make_unique<cuda::LtMatmul>(stream_->get())) {
    init_arena(Device::CUDA);
    const cudaDeviceProp& p = cuda::device_status().props;
    description_ =
        detail::concat("cuda: ", p.name, " (sm_", p.major, p.minor, ", ", p.multiProcessorCount,
                       " SMs), cuBLASLt ", cublasLtGetVersion(), ", ", dtype_name(compute));
  }
  ~CudaBackend() override { cudaStreamSynchronize(stream_->get()); }

  Device device() const override { return Device::CUDA; }
  std::string description() const override { return description_; }
  cudaStream_t stream() const { return stream_->get(); }

  // ---- memory and transfers -------------------------------------------------------------
  StorageRef allocate(size_t bytes) override { return cuda::device_storage(bytes, stream_); }

  void copy_from_host(const Tensor& host, const Tensor& dst) override {
    check_transfer(host, dst, "copy_from_host");
    if (host.numel() == 0) return;
    if (host.dtype() == dst.dtype()) {
      SD_CUDA_CHECK(cudaMemcpyAsync(dst.data(), host.data(), host.nbytes(), cudaMemcpyHostToDevice,
                                    stream()));
      return;
    }
    // Upload the bytes as they are, convert on the GPU.
    StorageRef staging = allocate(host.nbytes());
    SD_CUDA_CHECK(cudaMemcpyAsync(staging.get()->ptr(), host.data(), host.nbytes(),
                                  cudaMemcpyHostToDevice, stream()));
    cuda::cast(staging.get()->ptr(), host.dtype(), dst.data(), dst.dtype(), dst.numel(), stream());
  }

  void copy_to_host(const Tensor& src, const Tensor& host) override {
    check_transfer(host, src, "copy_to_host");
    if (host.numel() == 0) return;
    if (host.dtype() == src.dtype()) {
      SD_CUDA_CHECK(cudaMemcpyAsync(host.data(), src.data(), host.nbytes(), cudaMemcpyDeviceToHost,
                                    stream()));
      return;
    }
    StorageRef staging = allocate(host.nbytes());
    cuda::cast(src.data(), src.dtype(), staging.get()->ptr(), host.dtype(), src.numel(), stream());
    SD_CUDA_CHECK(cudaMemcpyAsync(host.data(), staging.get()->ptr(), host.nbytes(),
                                  cudaMemcpyDeviceToHost, stream()));
  }

  void synchronize() override { SD_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  // ---- weights ----------------------------------------------------------------------------
  // Conv weights are kept as [out, kh, kw, in] (OHWI), the filter layout of cuDNN's
  // channels-last convolutions.
  Weight conv_weight(const Tensor& oihw) override {
    SD_CHECK(oihw.rank() == 4, "CUDA conv_weight: expected [out, in, kh, kw], got ",
             oihw.shape().str());
    const Tensor f = oihw.to_host_dtype(DType::F32);
    const int64_t o = f.dim(0), i = f.dim(1), kh = f.dim(2), kw = f.dim(3);
    Tensor ohwi = Tensor::host({o, kh, kw, i}, DType::F32);
    const float* s = static_cast<const float*>(f.data());
    float* d = static_cast<float*>(ohwi.data());
    for (int64_t a = 0; a < o; ++a)
      for (int64_t b = 0; b < i; ++b)
        for (int64_t y = 0; y < kh; ++y)
          for (int64_t x = 0; x < kw; ++x)
            d[((a * kh + y) * kw + x) * i + b] = s[((a * i + b) * kh + y) * kw + x];
    return to_device(ohwi, compute_dtype());
  }

  Weight linear_weight(const Tensor& out_in) override {
    SD_CHECK(out_in.rank() == 2, "CUDA linear_weight: expected [out, in], got ",
             out_in.shape().str());
    return to_device(out_in, compute_dtype());
  }

  Weight vector(const Tensor& v) override { return to_device(v, DType::F32); }

  void update_weight(const Weight& w, const Tensor& host) override {
    SD_CHECK(w.t.defined() && (host.rank() == 4 || host.rank() == 2) && host.numel() == w.t.numel(),
             "CUDA update_weight: new values ", host.shape().str(), " for a weight of shape ",
             w.t.defined() ? w.t.shape().str() : "");
    const Weight fresh = host.rank() == 4 ? conv_weight(host) : linear_weight(host);
    SD_CHECK(fresh.t.shape() == w.t.shape() && fresh.t.dtype() == w.t.dtype(),
             "CUDA update_weight: converted ", fresh.t.shape().str(), " does not match ",
             w.t.shape().str());
    SD_CUDA_CHECK(cudaMemcpyAsync(w.t.data(), fresh.t.data(), w.t.nbytes(),
                                  cudaMemcpyDeviceToDevice, stream()));
    synchronize();
  }

  // ---- kernels ----------------------------------------------------------------------------
  Tensor conv2d(const Tensor&, const Weight&, const Weight*, Conv2dParams, Act,
                const Tensor*) override {
    fail("conv2d is not implemented on the CUDA backend yet");
  }

  Tensor attention(const Tensor&, const Tensor&, const Tensor&, int, bool) override {
    fail("attention is not implemented on the CUDA backend yet");
  }

  Tensor linear(const Tensor& x, const Weight& w, const Weight* bias, Act act,
                const Tensor* residual) override {
    check_device_tensor(x, "linear", "input");
    check_device_tensor(w.t, "linear", "weight");
    SD_CHECK(w.t.rank() == 2 && x.rank() >= 1 && x.dim(-1) == w.t.dim(1) && w.t.dim(1) > 0,
             "CUDA linear: input ", x.shape().str(), " does not match weight ", w.t.shape().str(),
             " [out, in]");
    SD_CHECK(x.dtype() == w.t.dtype(), "CUDA linear: input is ", dtype_name(x.dtype()),
             ", weight is ", dtype_name(w.t.dtype()));
    const int64_t in = w.t.dim(1), out = w.t.dim(0);
    Shape ys = x.shape();
    ys[-1] = out;
    if (bias) check_vector(*bias, out, "linear", "bias");
    if (residual) {
      check_device_tensor(*residual, "linear", "residual");
      SD_CHECK(residual->shape() == ys && residual->dtype() == x.dtype(), "CUDA linear: residual ",
               residual->shape().str(), " ", dtype_name(residual->dtype()),
               " does not match the output ", ys.str(), " ", dtype_name(x.dtype()));
    }
    Tensor y = alloc(ys, x.dtype());
    cuda::MatmulArgs args;
    args.m = x.numel() / in;
    args.n = out;
    args.k = in;
    args.dtype = x.dtype();
    args.x = x.data();
    args.w = w.t.data();
    args.y = y.data();
    args.bias = bias ? bias_in(*bias, x.dtype()) : nullptr;
    args.residual = residual ? residual->data() : nullptr;
    // cuBLASLt applies its activation after adding C; we fuse it only without a residual,
    // where the order cannot matter, and apply other activations afterwards.
    const bool fuse_act = cuda::LtMatmul::fusable(act, x.dtype()) && !residual;
    args.act = fuse_act ? act : Act::None;
    if (lt_->run(args)) {
      if (!fuse_act && act != Act::None) cuda::activate(y, y, act, stream());
      return y;
    }
    // No algorithm with this epilogue: a plain product, then our own epilogue kernel.
    lt_->run_plain(args);
    cuda::bias_residual_act(y, bias ? static_cast<const float*>(bias->t.data()) : nullptr, residual,
                            act, stream());
    return y;
  }

  Tensor group_norm(const Tensor& x, int groups, const Weight& gamma, const Weight& beta, float eps,
                    Act act) override {
    check_device_tensor(x, "group_norm", "input");
    SD_CHECK(x.rank() >= 2 && groups > 0 && x.dim(-1) % groups == 0, "CUDA group_norm: ", groups,
             " groups do not divide the channels of ", x.shape().str());
    SD_CHECK(act == Act::None || act == Act::SiLU, "CUDA group_norm: activation ", act_name(act),
             " is not supported (none or silu)");
    check_vector(gamma, x.dim(-1), "group_norm", "gamma");
    check_vector(beta, x.dim(-1), "group_norm", "beta");
    Tensor y = alloc(x.shape(), x.dtype());
    Tensor ws = alloc({cuda::group_norm_workspace_floats(x.shape(), groups)}, DType::F32);
    cuda::group_norm(x, groups, static_cast<const float*>(gamma.t.data()),
                     static_cast<const float*>(beta.t.data()), eps, act == Act::SiLU, y,
                     static_cast<float*>(ws.data()), stream());
    return y;
  }

  Tensor layer_norm(const Tensor& x, const Weight& gamma, const Weight& beta, float eps) override {
    check_device_tensor(x, "layer_norm", "input");
    SD_CHECK(x.rank() >= 1 && x.dim(-1) > 0, "CUDA layer_norm: bad input ", x.shape().str());
    check_vector(gamma, x.dim(-1), "layer_norm", "gamma");
    check_vector(beta, x.dim(-1), "layer_norm", "beta");
    Tensor y = alloc(x.shape(), x.dtype());
    cuda::layer_norm(x, static_cast<const float*>(gamma.t.data()),
                     static_cast<const float*>(beta.t.data()), eps, y, stream());
    return y;
  }

  Tensor activate(const Tensor& x, Act act) override {
    check_device_tensor(x, "activate", "input");
    Tensor y = alloc(x.shape(), x.dtype());
    cuda::activate(x, y, act, stream());
    return y;
  }

  Tensor geglu(const Tensor& x) override {
    check_device_tensor(x, "geglu", "input");
    SD_CHECK(x.rank() >= 1 && x.dim(-1) % 2 == 0, "CUDA geglu: last dimension of ", x.shape().str(),
             " is not even");
    Shape ys = x.shape();
    ys[-1] /= 2;
    Tensor y = alloc(ys, x.dtype());
    cuda::geglu(x, y, stream());
    return y;
  }

  Tensor softmax(const Tensor& x, float scale) override {
    check_device_tensor(x, "softmax", "input");
    SD_CHECK(x.rank() >= 1, "CUDA softmax: scalar input");
    Tensor y = alloc(x.shape(), x.dtype());
    cuda::softmax_last(x, y, scale, stream());
    return y;
  }

  Tensor upsample_nearest2x(const Tensor& x) override {
    check_device_tensor(x, "upsample_nearest2x", "input");
    SD_CHECK(x.rank() == 4, "CUDA upsample_nearest2x: expected NHWC, got ", x.shape().str());
    Tensor y = alloc({x.dim(0), 2 * x.dim(1), 2 * x.dim(2), x.dim(3)}, x.dtype());
    cuda::upsample_nearest2x(x, y, stream());
    return y;
  }

  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    check_device_tensor(a, "binary", "a");
    check_device_tensor(b, "binary", "b");
    SD_CHECK(a.dtype() == b.dtype(), "CUDA binary: operands are ", dtype_name(a.dtype()), " and ",
             dtype_name(b.dtype()));
    Tensor y = alloc(broadcast_shape(a.shape(), b.shape()), a.dtype());
    cuda::binary(op, a, b, y, stream());
    return y;
  }

  Tensor scale(const Tensor& x, float alpha, float beta) override {
    check_device_tensor(x, "scale", "input");
    Tensor y = alloc(x.shape(), x.dtype());
    cuda::scale(x, y, alpha, beta, stream());
    return y;
  }

  Tensor concat_channels(const Tensor& a, const Tensor& b) override {
    check_device_tensor(a, "concat_channels", "a");
    check_device_tensor(b, "concat_channels", "b");
    bool match = a.rank() == b.rank() && a.rank() >= 1 && a.dtype() == b.dtype();
    for (int i = 0; match && i < a.rank() - 1; ++i) match = a.dim(i) == b.dim(i);
    SD_CHECK(match, "CUDA concat_channels: ", a.shape().str(), " ", dtype_name(a.dtype()), " and ",
             b.shape().str(), " ", dtype_name(b.dtype()), " differ before the last dim");
    Shape ys = a.shape();
    ys[-1] = a.dim(-1) + b.dim(-1);
    Tensor y = alloc(ys, a.dtype());
    cuda::concat_last(a, b, y, stream());
    return y;
  }

  Tensor cast(const Tensor& x, DType dtype) override {
    SD_CHECK(x.device() == Device::CUDA && x.is_contiguous(), "CUDA cast: input ", x.shape().str(),
             " must be a contiguous GPU tensor");
    Tensor y = alloc(x.shape(), dtype);
    cuda::cast(x.data(), x.dtype(), y.data(), dtype, x.numel(), stream());
    return y;
  }

 private:
  static void check_transfer(const Tensor& host, const Tensor& dev, const char* op) {
    SD_CHECK(host.device() == Device::CPU && dev.device() == Device::CUDA, "CUDA ", op,
             ": expected a host and a GPU tensor");
    SD_CHECK(host.numel() == dev.numel(), "CUDA ", op, ": host ", host.shape().str(),
             " and device ", dev.shape().str(), " differ in size");
    SD_CHECK(host.is_contiguous() && dev.is_contiguous(), "CUDA ", op,
             ": tensors must be contiguous");
  }

  // A host tensor (any dtype) as a persistent device tensor of `dtype`. Synchronizes, so the
  // caller may free the host memory on return.
  Weight to_device(const Tensor& host, DType dtype) {
    SD_CHECK(host.device() == Device::CPU, "CUDA weight upload: tensor ", host.shape().str(),
             " is not on the host");
    Weight w;
    w.t = empty(host.shape(), dtype);
    copy_from_host(host, w.t);
    synchronize();
    return w;
  }

  // The bias as cuBLASLt's epilogue wants it: in the output dtype. A bf16 copy of an f32
  // vector is made at first use and kept in Weight::packed.
  const void* bias_in(const Weight& bias, DType dtype) {
    if (dtype == DType::F32) return bias.t.data();
    if (!bias.packed) {
      auto t = std::make_shared<Tensor>(empty(bias.t.shape(), dtype));
      cuda::cast(bias.t.data(), DType::F32, t->data(), dtype, bias.t.numel(), stream());
      bias.packed = t;
    }
    const auto* t = static_cast<const Tensor*>(bias.packed.get());
    SD_CHECK(t->dtype() == dtype, "CUDA linear: bias cache holds ", dtype_name(t->dtype()),
             ", needed ", dtype_name(dtype));
    return t->data();
  }

  std::shared_ptr<cuda::StreamOwner> stream_;
  std::unique_ptr<cuda::LtMatmul> lt_;
  std::string description_;
};

DType compute_dtype_for(const std::string& name, const cudaDeviceProp& props) {
  const bool fast_bf16 = props.major >= 8;
  if (name == "auto") return fast_bf16 ? DType::BF16 : DType::F32;
  const DType t = parse_dtype(name);
  SD_CHECK(t == DType::F32 || t == DType::BF16, "CUDA backend: compute dtype ", name,
           " is not supported (auto, f32 or bf16)");
  SD_CHECK(t != DType::BF16 || fast_bf16, "CUDA backend: bf16 needs sm_80 or newer; ", props.name,
           " is sm_", props.major, props.minor);
  return t;
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& options) {
  const cuda::DeviceStatus& status = cuda::device_status();
  SD_CHECK(status.usable, "CUDA backend unavailable: ", status.reason);
  SD_CUDA_CHECK(cudaSetDevice(status.device));
  if (status.memory_pools) {
    // Keep freed memory in the pool instead of returning it at every synchronisation.
    cudaMemPool_t pool;
    SD_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, status.device));
    uint64_t keep = UINT64_MAX;
    SD_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  return std::make_unique<CudaBackend>(compute_dtype_for(options.dtype, status.props));
}

double cuda_time_ms(Backend& backend, const std::function<void()>& fn, int runs, int warmup) {
  auto* cb = dynamic_cast<CudaBackend*>(&backend);
  SD_CHECK(cb, "cuda_time_ms: ", backend.description(), " is not a CUDA backend");
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start, stop;
  SD_CUDA_CHECK(cudaEventCreate(&start));
  SD_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> ms;
  try {
    for (int i = 0; i < std::max(1, runs); ++i) {
      SD_CUDA_CHECK(cudaEventRecord(start, cb->stream()));
      fn();
      SD_CUDA_CHECK(cudaEventRecord(stop, cb->stream()));
      SD_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0.f;
      SD_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      ms.push_back(t);
    }
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace sd
