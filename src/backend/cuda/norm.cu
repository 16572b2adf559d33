// Softmax, layer norm and group norm. Statistics are computed in f32 (group norm's final
// combination in f64) with fixed reduction orders, so results are deterministic run to run.
#include <algorithm>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_kernels.h"

namespace sd::cuda {

namespace {

// Threads for one block per row: a multiple of 32, at most 256, no more than the row needs.
unsigned row_threads(int64_t cols) {
  const int64_t t = std::clamp<int64_t>((cols + 31) / 32 * 32, 32, 256);
  return unsigned(t);
}

// ---- softmax over the last dimension, one block per row -------------------------------------
template <typename T>
__global__ void softmax_kernel(const T* x, T* y, int64_t cols, float scale) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * cols;
  T* yr = y + int64_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, to_f32(xr[j]) * scale);
  m = block_reduce<true>(m, scratch);
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(to_f32(xr[j]) * scale - m);
  const float inv = 1.f / block_reduce<false>(s, scratch);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    yr[j] = from_f32<T>(expf(to_f32(xr[j]) * scale - m) * inv);
}

// ---- layer norm, one block per row, two-pass statistics ------------------------------------
template <typename T>
__global__ void layer_norm_kernel(const T* x, const float* gamma, const float* beta, float eps,
                                  T* y, int64_t cols) {
  __shared__ float scratch[32];
  const T* xr = x + int64_t(blockIdx.x) * cols;
  T* yr = y + int64_t(blockIdx.x) * cols;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += to_f32(xr[j]);
  const float mean = block_reduce<false>(s, scratch) / float(cols);
  float q = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    const float d = to_f32(xr[j]) - mean;
    q += d * d;
  }
  const float var = block_reduce<false>(q, scratch) / float(cols);
  const float rstd = 1.f / sqrtf(var + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
    yr[j] = from_f32<T>((to_f32(xr[j]) - mean) * rstd * gamma[j] + beta[j]);
}

// ---- group norm ---------------------------------------------------------------------------
// Pass 1: Welford partials (count, mean, M2) of (batch n, group g, pixel chunk). Blocks of one
// pixel chunk differ only in g (the fastest grid index), so they run together and read the
// chunk's cache lines from L2 rather than DRAM.
struct Welford {
  float n, mean, m2;
};

__device__ __forceinline__ Welford combine(Welford a, Welford b) {
  const float n = a.n + b.n;
  if (n == 0.f) return a;
  const float d = b.mean - a.mean, wb = b.n / n;
  return {n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb};
}

__device__ __forceinline__ Welford warp_combine(Welford w) {
  for (int o = 16; o > 0; o >>= 1) {
    Welford other{__shfl_xor_sync(0xffffffffu, w.n, o), __shfl_xor_sync(0xffffffffu, w.mean, o),
                  __shfl_xor_sync(0xffffffffu, w.m2, o)};
    w = combine(w, other);
  }
  return w;
}

template <typename T>
__global__ void group_norm_partials_kernel(const T* x, int64_t hw, int64_t c, int cg,
                                           int64_t pixels_per_chunk, float* partials) {
  __shared__ Welford scratch[32];
  const int g = blockIdx.x, chunk = blockIdx.y, n = blockIdx.z;
  const int groups = gridDim.x, chunks = gridDim.y;
  const int64_t p0 = int64_t(chunk) * pixels_per_chunk;
  const int64_t p1 = p0 + pixels_per_chunk < hw ? p0 + pixels_per_chunk : hw;
  const int count = int((p1 - p0) * cg);
  const T* base = x + (int64_t(n) * hw + p0) * c + int64_t(g) * cg;
  Welford w{0.f, 0.f, 0.f};
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    const int p = e / cg, j = e - p * cg;
    const float v = to_f32(base[int64_t(p) * c + j]);
    w.n += 1.f;
    const float d = v - w.mean;
    w.mean += d / w.n;
    w.m2 += d * (v - w.mean);
  }
  w = warp_combine(w);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = w;
  __syncthreads();
  if (threadIdx.x == 0) {
    Welford r = scratch[0];
    for (int i = 1; i < int(blockDim.x >> 5); ++i) r = combine(r, scratch[i]);
    float* out = partials + ((int64_t(n) * groups + g) * chunks + chunk) * 3;
    out[0] = r.n;
    out[1] = r.mean;
    out[2] = r.m2;
  }
}

// Pass 2: one thread per (n, g) combines its chunks in order (f64) into mean and 1/std.
__global__ void group_norm_finalize_kernel(const float* partials, int64_t ng, int chunks, float eps,
                                           float* stats) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= ng) return;
  double n = 0, mean = 0, m2 = 0;
  for (int k = 0; k < chunks; ++k) {
    const float* p = partials + (i * chunks + k) * 3;
    const double nb = p[0];
    if (nb == 0) continue;
    const double tot = n + nb, d = double(p[1]) - mean;
    mean += d * nb / tot;
    m2 += double(p[2]) + d * d * n * nb / tot;
    n = tot;
  }
  stats[i * 2] = float(mean);
  stats[i * 2 + 1] = float(1.0 / sqrt(m2 / n + double(eps)));
}

// Pass 3: normalise, scale, shift and (optionally) SiLU, elementwise.
template <typename T, int N>
__global__ void group_norm_apply_kernel(const T* x, const float* stats, const float* gamma,
                                        const float* beta, T* y, int64_t total, int64_t hwc,
                                        int64_t c, int cg, int groups, bool silu_out) {
  const int64_t packs = total / N;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < packs; i += stride) {
    const int64_t e = i * N;
    const int64_t n = e / hwc;
    const int c0 = int(e % c);
    Pack<T, N> v = reinterpret_cast<const Pack<T, N>*>(x)[i];
#pragma unroll
    for (int k = 0; k < N; ++k) {
      const int ch = c0 + k;
      const float* st = stats + (n * groups + ch / cg) * 2;
      float r = (to_f32(v.v[k]) - st[0]) * st[1] * gamma[ch] + beta[ch];
      if (silu_out) r = silu(r);
      v.v[k] = from_f32<T>(r);
    }
    reinterpret_cast<Pack<T, N>*>(y)[i] = v;
  }
}

struct GroupNormGeometry {
  int64_t batch, hw, c, cg, chunks, pixels_per_chunk;
};

GroupNormGeometry group_norm_geometry(const Shape& s, int groups) {
  GroupNormGeometry geo{};
  geo.batch = s[0];
  geo.c = s[-1];
  geo.hw = (geo.batch > 0 && geo.c > 0) ? s.numel() / (geo.batch * geo.c) : 0;
  geo.cg = geo.c / groups;
  // About four blocks per multiprocessor in pass 1, each with at least 2048 elements.
  const int64_t ng = std::max<int64_t>(1, geo.batch * groups);
  const int64_t want = (int64_t(sm_count()) * 4 + ng - 1) / ng;
  const int64_t most = std::max<int64_t>(1, geo.hw * geo.cg / 2048);
  const int64_t chunks = std::clamp<int64_t>(want, 1, most);
  geo.pixels_per_chunk = std::max<int64_t>(1, (geo.hw + chunks - 1) / chunks);
  geo.chunks = std::max<int64_t>(1, (geo.hw + geo.pixels_per_chunk - 1) / geo.pixels_per_chunk);
  return geo;
}

}  // namespace

void softmax_last(const Tensor& x, const Tensor& y, float scale, cudaStream_t stream) {
  const int64_t cols = x.dim(-1);
  if (x.numel() == 0) return;
  const int64_t rows = x.numel() / cols;
  dispatch_compute(x.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_kernel<T><<<unsigned(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(x.data()), static_cast<T*>(y.data()), cols, scale);
    SD_CUDA_CHECK_LAUNCH("softmax_kernel");
  });
}

void layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps, const Tensor& y,
                cudaStream_t stream) {
  const int64_t cols = x.dim(-1);
  if (x.numel() == 0) return;
  const int64_t rows = x.numel() / cols;
  dispatch_compute(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_kernel<T><<<unsigned(rows), row_threads(cols), 0, stream>>>(
        static_cast<const T*>(x.data()), gamma, beta, eps, static_cast<T*>(y.data()), cols);
    SD_CUDA_CHECK_LAUNCH("layer_norm_kernel");
  });
}

int64_t group_norm_workspace_floats(const Shape& x, int groups) {
  const GroupNormGeometry geo = group_norm_geometry(x, groups);
  return geo.batch * groups * (geo.chunks * 3 + 2);
}

void group_norm(const Tensor& x, int groups, const float* gamma, const float* beta, float eps,
                bool silu, const Tensor& y, float* workspace, cudaStream_t stream) {
  if (x.numel() == 0) return;
  const GroupNormGeometry geo = group_norm_geometry(x.shape(), groups);
  const int64_t ng = geo.batch * groups;
  float* partials = workspace;
  float* stats = workspace + ng * geo.chunks * 3;
  SD_CHECK(
      geo.pixels_per_chunk * geo.cg < (int64_t(1) << 31) && geo.batch < 65536 && geo.chunks < 65536,
      "CUDA group_norm: shape ", x.shape().str(), " is too large");
  dispatch_compute(x.dtype(), "group_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    const dim3 grid(unsigned(groups), unsigned(geo.chunks), unsigned(geo.batch));
    group_norm_partials_kernel<T><<<grid, kThreads, 0, stream>>>(xp, geo.hw, geo.c, int(geo.cg),
                                                                 geo.pixels_per_chunk, partials);
    SD_CUDA_CHECK_LAUNCH("group_norm_partials_kernel");
    group_norm_finalize_kernel<<<unsigned((ng + 127) / 128), 128, 0, stream>>>(
        partials, ng, int(geo.chunks), eps, stats);
    SD_CUDA_CHECK_LAUNCH("group_norm_finalize_kernel");
    constexpr int N = kPack<T>;
    const int64_t total = x.numel();
    if (geo.c % N == 0 && aligned16(xp) && aligned16(yp)) {
      group_norm_apply_kernel<T, N><<<grid_for(total / N), kThreads, 0, stream>>>(
          xp, stats, gamma, beta, yp, total, geo.hw * geo.c, geo.c, int(geo.cg), groups, silu);
    } else {
      group_norm_apply_kernel<T, 1><<<grid_for(total), kThreads, 0, stream>>>(
          xp, stats, gamma, beta, yp, total, geo.hw * geo.c, geo.c, int(geo.cg), groups, silu);
    }
    SD_CUDA_CHECK_LAUNCH("group_norm_apply_kernel");
  });
}

}  // namespace sd::cuda
