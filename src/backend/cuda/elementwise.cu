// Elementwise kernels: activations, scale, GEGLU, broadcast binary ops, casts, channel concat,
// nearest upsampling and the matmul epilogue. Memory-bound: each moves 16 bytes per access where
// the pointers and sizes allow it, and computes in f32.
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace sd::cuda {

namespace {

__global__ void probe_kernel() {}

// ---- unary map: y[i] = f(x[i]) ------------------------------------------------------------
template <typename T, int N, typename F>
__global__ void map_kernel(const T* x, T* y, int64_t n, F f) {
  const int64_t packs = n / N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) {
    Pack<T, N> v = reinterpret_cast<const Pack<T, N>*>(x)[p];
#pragma unroll
    for (int k = 0; k < N; ++k) v.v[k] = from_f32<T>(f(to_f32(v.v[k])));
    reinterpret_cast<Pack<T, N>*>(y)[p] = v;
  }
  const int64_t tail = packs * N + tid;  // at most N - 1 elements
  if (tail < n) y[tail] = from_f32<T>(f(to_f32(x[tail])));
}

template <typename T, typename F>
void launch_map(const T* x, T* y, int64_t n, F f, cudaStream_t stream) {
  if (n == 0) return;
  constexpr int N = kPack<T>;
  if (aligned16(x) && aligned16(y)) {
    map_kernel<T, N><<<grid_for(n / N + 1), kThreads, 0, stream>>>(x, y, n, f);
  } else {
    map_kernel<T, 1><<<grid_for(n), kThreads, 0, stream>>>(x, y, n, f);
  }
  SD_CUDA_CHECK_LAUNCH("map_kernel");
}

struct ActFn {
  Act act;
  __device__ float operator()(float x) const { return apply_act(act, x); }
};
struct ScaleFn {
  float alpha, beta;
  __device__ float operator()(float x) const { return fmaf(alpha, x, beta); }
};

// ---- binary ops ---------------------------------------------------------------------------
__device__ __forceinline__ float apply_binary(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add:
      return a + b;
    case BinaryOp::Sub:
      return a - b;
    case BinaryOp::Mul:
      return a * b;
    case BinaryOp::Div:
      return a / b;
  }
  return a;
}

// Same shapes: y[i] = a[i] op b[i].
template <typename T, int N>
__global__ void binary_same_kernel(BinaryOp op, const T* a, const T* b, T* y, int64_t n) {
  const int64_t packs = n / N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t p = tid; p < packs; p += stride) {
    Pack<T, N> va = reinterpret_cast<const Pack<T, N>*>(a)[p];
    Pack<T, N> vb = reinterpret_cast<const Pack<T, N>*>(b)[p];
#pragma unroll
    for (int k = 0; k < N; ++k)
      va.v[k] = from_f32<T>(apply_binary(op, to_f32(va.v[k]), to_f32(vb.v[k])));
    reinterpret_cast<Pack<T, N>*>(y)[p] = va;
  }
  const int64_t tail = packs * N + tid;
  if (tail < n) y[tail] = from_f32<T>(apply_binary(op, to_f32(a[tail]), to_f32(b[tail])));
}

// General broadcasting: strides are 0 along broadcast dimensions.
struct BroadcastIndex {
  int rank;
  int64_t dims[Shape::kMaxRank];
  int64_t a_stride[Shape::kMaxRank];
  int64_t b_stride[Shape::kMaxRank];
};

template <typename T>
__global__ void binary_broadcast_kernel(BinaryOp op, const T* a, const T* b, T* y, int64_t n,
                                        BroadcastIndex ix) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t rest = i, ia = 0, ib = 0;
    for (int d = ix.rank - 1; d >= 0; --d) {
      const int64_t c = rest % ix.dims[d];
      rest /= ix.dims[d];
      ia += c * ix.a_stride[d];
      ib += c * ix.b_stride[d];
    }
    y[i] = from_f32<T>(apply_binary(op, to_f32(a[ia]), to_f32(b[ib])));
  }
}

// ---- GEGLU --------------------------------------------------------------------------------
template <typename T, int N>
__global__ void geglu_kernel(const T* x, T* y, int64_t rows, int64_t f) {
  const int64_t fp = f / N, n = rows * fp;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / fp, j = (i - r * fp) * N;
    const T* row = x + r * 2 * f;
    Pack<T, N> h = *reinterpret_cast<const Pack<T, N>*>(row + j);
    const Pack<T, N> g = *reinterpret_cast<const Pack<T, N>*>(row + f + j);
#pragma unroll
    for (int k = 0; k < N; ++k) h.v[k] = from_f32<T>(to_f32(h.v[k]) * gelu_erf(to_f32(g.v[k])));
    *reinterpret_cast<Pack<T, N>*>(y + r * f + j) = h;
  }
}

// ---- casts --------------------------------------------------------------------------------
template <typename Tin, typename Tout>
__global__ void cast_kernel(const Tin* x, Tout* y, int64_t n) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = from_f32<Tout>(to_f32(x[i]));
}

// ---- data movement in copy units U (1 to 16 bytes) ----------------------------------------
template <typename U>
__global__ void concat_kernel(const U* a, const U* b, U* y, int64_t rows, int64_t ca, int64_t cb) {
  const int64_t ct = ca + cb, n = rows * ct;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / ct, c = i - r * ct;
    y[i] = c < ca ? a[r * ca + c] : b[r * cb + (c - ca)];
  }
}

template <typename U>
__global__ void upsample2x_kernel(const U* x, U* y, int64_t batch, int64_t h, int64_t w,
                                  int64_t cu) {
  const int64_t n = batch * 4 * h * w * cu;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t p = i / cu;
    const int64_t c = i - p * cu;
    const int64_t ox = p % (2 * w);
    p /= 2 * w;
    const int64_t oy = p % (2 * h);
    const int64_t b = p / (2 * h);
    y[i] = x[((b * h + oy / 2) * w + ox / 2) * cu + c];
  }
}

// Largest copy unit (16, 8, 4 or 2 bytes, else 1) dividing every byte count and address.
int copy_unit(std::initializer_list<uint64_t> values) {
  uint64_t all = 0;
  for (uint64_t v : values) all |= v;
  for (int u = 16; u > 1; u /= 2)
    if ((all & uint64_t(u - 1)) == 0) return u;
  return 1;
}

template <typename F>
void dispatch_unit(int unit, F&& f) {
  switch (unit) {
    case 16:
      f(TypeTag<uint4>{});
      return;
    case 8:
      f(TypeTag<uint2>{});
      return;
    case 4:
      f(TypeTag<uint32_t>{});
      return;
    case 2:
      f(TypeTag<uint16_t>{});
      return;
    default:
      f(TypeTag<uint8_t>{});
      return;
  }
}

// ---- matmul epilogue ----------------------------------------------------------------------
template <typename T, int N>
__global__ void bias_residual_act_kernel(T* y, const float* bias, const T* residual, int64_t rows,
                                         int64_t cols, Act act) {
  const int64_t cp = cols / N, n = rows * cp;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t c = (i % cp) * N;
    Pack<T, N> v = reinterpret_cast<Pack<T, N>*>(y)[i];
    Pack<T, N> r;
    if (residual) r = reinterpret_cast<const Pack<T, N>*>(residual)[i];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float s = to_f32(v.v[k]);
      if (bias) s += bias[c + k];
      if (residual) s += to_f32(r.v[k]);
      v.v[k] = from_f32<T>(apply_act(act, s));
    }
    reinterpret_cast<Pack<T, N>*>(y)[i] = v;
  }
}

template <typename T>
const T* ptr(const Tensor& t) {
  return static_cast<const T*>(t.data());
}
template <typename T>
T* mut_ptr(const Tensor& t) {
  return static_cast<T*>(t.data());
}

}  // namespace

int sm_count() {
  static const int count = [] {
    int dev = 0, n = 0;
    SD_CUDA_CHECK(cudaGetDevice(&dev));
    SD_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  return count;
}

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, probe_kernel);
}

void activate(const Tensor& x, const Tensor& y, Act act, cudaStream_t stream) {
  dispatch_compute(x.dtype(), "activate", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map(ptr<T>(x), mut_ptr<T>(y), x.numel(), ActFn{act}, stream);
  });
}

void scale(const Tensor& x, const Tensor& y, float alpha, float beta, cudaStream_t stream) {
  dispatch_compute(x.dtype(), "scale", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_map(ptr<T>(x), mut_ptr<T>(y), x.numel(), ScaleFn{alpha, beta}, stream);
  });
}

void geglu(const Tensor& x, const Tensor& y, cudaStream_t stream) {
  const int64_t f = y.dim(-1), rows = y.numel() / (f ? f : 1);
  if (y.numel() == 0) return;
  dispatch_compute(x.dtype(), "geglu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = kPack<T>;
    if (f % N == 0 && aligned16(x.data()) && aligned16(y.data())) {
      geglu_kernel<T, N>
          <<<grid_for(rows * f / N), kThreads, 0, stream>>>(ptr<T>(x), mut_ptr<T>(y), rows, f);
    } else {
      geglu_kernel<T, 1>
          <<<grid_for(rows * f), kThreads, 0, stream>>>(ptr<T>(x), mut_ptr<T>(y), rows, f);
    }
    SD_CUDA_CHECK_LAUNCH("geglu_kernel");
  });
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y, cudaStream_t stream) {
  const int64_t n = y.numel();
  if (n == 0) return;
  dispatch_compute(y.dtype(), "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (a.shape() == y.shape() && b.shape() == y.shape()) {
      constexpr int N = kPack<T>;
      if (aligned16(a.data()) && aligned16(b.data()) && aligned16(y.data())) {
        binary_same_kernel<T, N><<<grid_for(n / N + 1), kThreads, 0, stream>>>(
            op, ptr<T>(a), ptr<T>(b), mut_ptr<T>(y), n);
      } else {
        binary_same_kernel<T, 1>
            <<<grid_for(n), kThreads, 0, stream>>>(op, ptr<T>(a), ptr<T>(b), mut_ptr<T>(y), n);
      }
      SD_CUDA_CHECK_LAUNCH("binary_same_kernel");
      return;
    }
    BroadcastIndex ix{};
    ix.rank = y.rank();
    for (int d = y.rank() - 1, da = a.rank() - 1, db = b.rank() - 1; d >= 0; --d, --da, --db) {
      ix.dims[d] = y.dim(d);
      ix.a_stride[d] = (da >= 0 && a.dim(da) != 1) ? a.stride(da) : 0;
      ix.b_stride[d] = (db >= 0 && b.dim(db) != 1) ? b.stride(db) : 0;
    }
    binary_broadcast_kernel<T>
        <<<grid_for(n), kThreads, 0, stream>>>(op, ptr<T>(a), ptr<T>(b), mut_ptr<T>(y), n, ix);
    SD_CUDA_CHECK_LAUNCH("binary_broadcast_kernel");
  });
}

void cast(const void* x, DType x_type, void* y, DType y_type, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (x_type == y_type) {
    SD_CUDA_CHECK(
        cudaMemcpyAsync(y, x, size_t(n) * dtype_size(x_type), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatch_storage(x_type, [&](auto in_tag) {
    using Tin = typename decltype(in_tag)::type;
    dispatch_storage(y_type, [&](auto out_tag) {
      using Tout = typename decltype(out_tag)::type;
      cast_kernel<Tin, Tout><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const Tin*>(x),
                                                                   static_cast<Tout*>(y), n);
      SD_CUDA_CHECK_LAUNCH("cast_kernel");
    });
  });
}

void concat_last(const Tensor& a, const Tensor& b, const Tensor& y, cudaStream_t stream) {
  if (y.numel() == 0) return;
  const uint64_t es = dtype_size(y.dtype());
  const int64_t ca = a.dim(-1), cb = b.dim(-1), rows = y.numel() / y.dim(-1);
  const int unit =
      copy_unit({uint64_t(ca) * es, uint64_t(cb) * es, reinterpret_cast<uintptr_t>(a.data()),
                 reinterpret_cast<uintptr_t>(b.data()), reinterpret_cast<uintptr_t>(y.data())});
  dispatch_unit(unit, [&](auto tag) {
    using U = typename decltype(tag)::type;
    const int64_t ua = int64_t(ca * es / sizeof(U)), ub = int64_t(cb * es / sizeof(U));
    concat_kernel<U><<<grid_for(rows * (ua + ub)), kThreads, 0, stream>>>(
        static_cast<const U*>(a.data()), static_cast<const U*>(b.data()), static_cast<U*>(y.data()),
        rows, ua, ub);
    SD_CUDA_CHECK_LAUNCH("concat_kernel");
  });
}

void upsample_nearest2x(const Tensor& x, const Tensor& y, cudaStream_t stream) {
  if (y.numel() == 0) return;
  const uint64_t es = dtype_size(x.dtype());
  const int64_t c = x.dim(3);
  const int unit = copy_unit({uint64_t(c) * es, reinterpret_cast<uintptr_t>(x.data()),
                              reinterpret_cast<uintptr_t>(y.data())});
  dispatch_unit(unit, [&](auto tag) {
    using U = typename decltype(tag)::type;
    const int64_t cu = int64_t(c * es / sizeof(U));
    upsample2x_kernel<U><<<grid_for(y.nbytes() / sizeof(U)), kThreads, 0, stream>>>(
        static_cast<const U*>(x.data()), static_cast<U*>(y.data()), x.dim(0), x.dim(1), x.dim(2),
        cu);
    SD_CUDA_CHECK_LAUNCH("upsample2x_kernel");
  });
}

void bias_residual_act(const Tensor& y, const float* bias, const Tensor* residual, Act act,
                       cudaStream_t stream) {
  if (y.numel() == 0) return;
  const int64_t cols = y.dim(-1), rows = y.numel() / cols;
  dispatch_compute(y.dtype(), "bias_residual_act", [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int N = kPack<T>;
    const T* res = residual ? ptr<T>(*residual) : nullptr;
    if (cols % N == 0 && aligned16(y.data()) && (!res || aligned16(res))) {
      bias_residual_act_kernel<T, N><<<grid_for(rows * cols / N), kThreads, 0, stream>>>(
          mut_ptr<T>(y), bias, res, rows, cols, act);
    } else {
      bias_residual_act_kernel<T, 1><<<grid_for(rows * cols), kThreads, 0, stream>>>(
          mut_ptr<T>(y), bias, res, rows, cols, act);
    }
    SD_CUDA_CHECK_LAUNCH("bias_residual_act_kernel");
  });
}

}  // namespace sd::cuda
