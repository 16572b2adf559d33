#include "backend/cpu/cpu_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/math_approx.h"

namespace sd::cpu {

namespace {

constexpr int64_t kBlock = 16384;  // elements per parallel work item of elementwise loops

// Calls f(begin, end) for consecutive blocks of [0, n), in parallel when there are several.
template <typename F>
void parallel_blocks(int64_t n, int64_t block, const F& f) {
  const int64_t blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) f(b * block, std::min(n, (b + 1) * block));
}

// Rows of `row_elems` elements in parallel, with about kBlock elements per work item.
template <typename F>
void parallel_rows(int64_t rows, int64_t row_elems, const F& f) {
  const int64_t per = std::max<int64_t>(1, kBlock / std::max<int64_t>(1, row_elems));
  parallel_blocks(rows, per, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f(r);
  });
}

template <typename F>
void dispatch_type(DType t, const char* what, const F& f) {
  if (t == DType::F32) {
    f.template operator()<float>();
  } else if (t == DType::BF16) {
    f.template operator()<bf16>();
  } else {
    fail(what, ": ", dtype_name(t), " tensors are not supported (expected f32 or bf16)");
  }
}

void check_host(const Tensor& t, const char* what, const char* name) {
  SD_CHECK(t.device() == Device::CPU && t.defined() && t.is_contiguous(), what, ": ", name, " ",
           t.shape().str(), " must be a contiguous host tensor");
}

void check_pair(const Tensor& x, const Tensor& y, const char* what) {
  check_host(x, what, "input");
  check_host(y, what, "output");
  SD_CHECK(x.dtype() == y.dtype(), what, ": input is ", dtype_name(x.dtype()), ", output ",
           dtype_name(y.dtype()));
}

// Per-thread scratch that only grows (so steady-state calls allocate nothing).
float* scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

template <typename Tin, typename Tout>
void softmax_row(const Tin* in, int64_t valid, int64_t cols, float scale, Tout* out, float* tmp) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, load(in, j) * scale);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < valid; ++j) {
    tmp[j] = exp_approx(load(in, j) * scale - mx);
    sum += tmp[j];
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < valid; ++j) store(out, j, tmp[j] * inv);
  for (int64_t j = valid; j < cols; ++j) store(out, j, 0.f);
}

}  // namespace

void activate(const Tensor& x, Act act, const Tensor& y) {
  check_pair(x, y, "activate");
  SD_CHECK(x.numel() == y.numel(), "activate: output size");
  dispatch_type(x.dtype(), "activate", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    dispatch_act(act, [&]<Act A>() {
      parallel_blocks(x.numel(), kBlock, [&](int64_t b, int64_t e) {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) store(yp, i, act_fn<A>(load(xp, i)));
      });
    });
  });
}

void scale(const Tensor& x, float alpha, float beta, const Tensor& y) {
  check_pair(x, y, "scale");
  SD_CHECK(x.numel() == y.numel(), "scale: output size");
  dispatch_type(x.dtype(), "scale", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    parallel_blocks(x.numel(), kBlock, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) store(yp, i, alpha * load(xp, i) + beta);
    });
  });
}

void geglu(const Tensor& x, const Tensor& y) {
  check_pair(x, y, "geglu");
  const int64_t F = y.dim(-1), rows = y.numel() / std::max<int64_t>(1, F);
  SD_CHECK(x.dim(-1) == 2 * F && x.numel() == 2 * y.numel(), "geglu: input ", x.shape().str(),
           " output ", y.shape().str());
  dispatch_type(x.dtype(), "geglu", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    parallel_rows(rows, 2 * F, [&](int64_t r) {
      const T* in = xp + r * 2 * F;
      T* out = yp + r * F;
#pragma omp simd
      for (int64_t f = 0; f < F; ++f) store(out, f, load(in, f) * gelu_erf(load(in, F + f)));
    });
  });
}

void group_norm(const Tensor& x, int groups, const float* gamma, const float* beta, float eps,
                Act act, const Tensor& y) {
  check_pair(x, y, "group_norm");
  SD_CHECK(x.shape() == y.shape() && x.rank() >= 2, "group_norm: input ", x.shape().str(),
           " output ", y.shape().str());
  SD_CHECK(act == Act::None || act == Act::SiLU, "group_norm: fused activation ", act_name(act),
           " is not supported (none or silu)");
  const int64_t N = x.dim(0), C = x.dim(-1), P = x.numel() / std::max<int64_t>(1, N * C);
  SD_CHECK(groups > 0 && C % groups == 0, "group_norm: ", C, " channels do not split into ", groups,
           " groups");
  const int64_t CG = C / groups;
  const int64_t rows_per_chunk = std::max<int64_t>(1, std::min<int64_t>(64, kBlock / C));
  const int64_t chunks = (P + rows_per_chunk - 1) / rows_per_chunk;
  const int64_t items = N * chunks;
  // Scratch: per-chunk channel sums, then per-sample channel mean, scale a and shift b.
  float* partial = scratch(size_t(items * C + 3 * N * C));
  float* mean_c = partial + items * C;
  float* a = mean_c + N * C;
  float* b = a + N * C;
  const double count = double(P * CG);

  dispatch_type(x.dtype(), "group_norm", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    auto rows_of = [&](int64_t item, int64_t& n, int64_t& r0, int64_t& r1) {
      n = item / chunks;
      r0 = (item % chunks) * rows_per_chunk;
      r1 = std::min(P, r0 + rows_per_chunk);
    };
    // Sum over the chunks of one group's channels, in double.
    auto group_sum = [&](int64_t n, int64_t g) {
      double s = 0;
      for (int64_t ch = 0; ch < chunks; ++ch)
        for (int64_t c = g * CG; c < (g + 1) * CG; ++c) s += partial[(n * chunks + ch) * C + c];
      return s;
    };
    // Pass 1: per-chunk channel sums -> means.
#pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      int64_t n, r0, r1;
      rows_of(it, n, r0, r1);
      float* acc = partial + it * C;
      std::fill(acc, acc + C, 0.f);
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = xp + (n * P + r) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += load(row, c);
      }
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < groups; ++g)
        std::fill(mean_c + n * C + g * CG, mean_c + n * C + (g + 1) * CG,
                  float(group_sum(n, g) / count));
        // Pass 2: per-chunk sums of squared deviations -> variance (two-pass for accuracy).
#pragma omp parallel for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      int64_t n, r0, r1;
      rows_of(it, n, r0, r1);
      float* acc = partial + it * C;
      const float* m = mean_c + n * C;
      std::fill(acc, acc + C, 0.f);
      for (int64_t r = r0; r < r1; ++r) {
        const T* row = xp + (n * P + r) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) {
          const float d = load(row, c) - m[c];
          acc[c] += d * d;
        }
      }
    }
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g = 0; g < groups; ++g) {
        const float rstd = float(1.0 / std::sqrt(group_sum(n, g) / count + double(eps)));
        for (int64_t c = g * CG; c < (g + 1) * CG; ++c) {
          a[n * C + c] = rstd * gamma[c];
          b[n * C + c] = beta[c] - mean_c[n * C + c] * a[n * C + c];
        }
      }
    // Pass 3: y = act(x * a + b).
    dispatch_act(act, [&]<Act A>() {
#pragma omp parallel for schedule(static)
      for (int64_t it = 0; it < items; ++it) {
        int64_t n, r0, r1;
        rows_of(it, n, r0, r1);
        const float *an = a + n * C, *bn = b + n * C;
        for (int64_t r = r0; r < r1; ++r) {
          const T* row = xp + (n * P + r) * C;
          T* out = yp + (n * P + r) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) store(out, c, act_fn<A>(load(row, c) * an[c] + bn[c]));
        }
      }
    });
  });
}

void layer_norm(const Tensor& x, const float* gamma, const float* beta, float eps,
                const Tensor& y) {
  check_pair(x, y, "layer_norm");
  SD_CHECK(x.shape() == y.shape(), "layer_norm: input ", x.shape().str(), " output ",
           y.shape().str());
  const int64_t C = x.dim(-1), rows = x.numel() / std::max<int64_t>(1, C);
  dispatch_type(x.dtype(), "layer_norm", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    parallel_rows(rows, C, [&](int64_t r) {
      const T* in = xp + r * C;
      T* out = yp + r * C;
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < C; ++c) sum += load(in, c);
      const float mean = sum / float(C);
      float sq = 0.f;
#pragma omp simd reduction(+ : sq)
      for (int64_t c = 0; c < C; ++c) {
        const float d = load(in, c) - mean;
        sq += d * d;
      }
      const float rstd = 1.f / std::sqrt(sq / float(C) + eps);
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        store(out, c, (load(in, c) - mean) * rstd * gamma[c] + beta[c]);
    });
  });
}

void softmax(const Tensor& x, float scale, const Tensor& y) {
  check_pair(x, y, "softmax");
  SD_CHECK(x.shape() == y.shape(), "softmax: input ", x.shape().str(), " output ", y.shape().str());
  const int64_t C = x.dim(-1), rows = x.numel() / std::max<int64_t>(1, C);
  dispatch_type(x.dtype(), "softmax", [&]<typename T>() {
    const T* xp = static_cast<const T*>(x.data());
    T* yp = static_cast<T*>(y.data());
    parallel_rows(rows, C, [&](int64_t r) {
      softmax_row(xp + r * C, C, C, scale, yp + r * C, scratch(size_t(C)));
    });
  });
}

void attention_softmax(float* s, int64_t rows, int64_t cols, float scale, bool causal, int64_t q0,
                       void* out, DType out_dtype) {
  float* tmp = scratch(size_t(cols));
  dispatch_type(out_dtype, "attention softmax", [&]<typename T>() {
    T* op = static_cast<T*>(out);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t valid = causal ? std::min(cols, q0 + r + 1) : cols;
      softmax_row(s + r * cols, valid, cols, scale, op + r * cols, tmp);
    }
  });
}

void upsample_nearest2x(const Tensor& x, const Tensor& y) {
  check_pair(x, y, "upsample_nearest2x");
  SD_CHECK(x.rank() == 4 && y.rank() == 4 && y.dim(0) == x.dim(0) && y.dim(1) == 2 * x.dim(1) &&
               y.dim(2) == 2 * x.dim(2) && y.dim(3) == x.dim(3),
           "upsample_nearest2x: input ", x.shape().str(), " output ", y.shape().str());
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
  const size_t pixel = size_t(x.dim(3)) * dtype_size(x.dtype());
  const char* xp = static_cast<const char*>(x.data());
  char* yp = static_cast<char*>(y.data());
  parallel_rows(N * H, 4 * W * x.dim(3), [&](int64_t nh) {
    const char* in = xp + size_t(nh) * size_t(W) * pixel;
    char* out = yp + size_t(nh) * 2 * size_t(2 * W) * pixel;  // output row 2h of image n
    for (int64_t w = 0; w < W; ++w) {
      std::memcpy(out + size_t(2 * w) * pixel, in + size_t(w) * pixel, pixel);
      std::memcpy(out + size_t(2 * w + 1) * pixel, in + size_t(w) * pixel, pixel);
    }
    std::memcpy(out + size_t(2 * W) * pixel, out, size_t(2 * W) * pixel);
  });
}

void concat_channels(const Tensor& a, const Tensor& b, const Tensor& y) {
  check_pair(a, y, "concat_channels");
  check_pair(b, y, "concat_channels");
  const int64_t CA = a.dim(-1), CB = b.dim(-1), rows = y.numel() / std::max<int64_t>(1, CA + CB);
  SD_CHECK(y.dim(-1) == CA + CB && a.numel() == rows * CA && b.numel() == rows * CB,
           "concat_channels: ", a.shape().str(), " + ", b.shape().str(), " -> ", y.shape().str());
  const size_t es = dtype_size(y.dtype());
  const char *ap = static_cast<const char*>(a.data()), *bp = static_cast<const char*>(b.data());
  char* yp = static_cast<char*>(y.data());
  parallel_rows(rows, CA + CB, [&](int64_t r) {
    std::memcpy(yp + size_t(r * (CA + CB)) * es, ap + size_t(r * CA) * es, size_t(CA) * es);
    std::memcpy(yp + size_t(r * (CA + CB) + CA) * es, bp + size_t(r * CB) * es, size_t(CB) * es);
  });
}

void cast(const Tensor& x, const Tensor& y) {
  check_host(x, "cast", "input");
  check_host(y, "cast", "output");
  SD_CHECK(x.numel() == y.numel(), "cast: ", x.shape().str(), " -> ", y.shape().str());
  const DType st = x.dtype(), dt = y.dtype();
  const size_t ss = dtype_size(st), ds = dtype_size(dt);
  const char* xp = static_cast<const char*>(x.data());
  char* yp = static_cast<char*>(y.data());
  parallel_blocks(x.numel(), kBlock, [&](int64_t b, int64_t e) {
    if (st == DType::F32 && dt == DType::BF16) {
      const float* in = reinterpret_cast<const float*>(xp);
      bf16* out = reinterpret_cast<bf16*>(yp);
#pragma omp simd
      for (int64_t i = b; i < e; ++i) store(out, i, in[i]);
    } else if (st == DType::BF16 && dt == DType::F32) {
      const bf16* in = reinterpret_cast<const bf16*>(xp);
      float* out = reinterpret_cast<float*>(yp);
#pragma omp simd
      for (int64_t i = b; i < e; ++i) out[i] = load(in, i);
    } else {
      convert(xp + size_t(b) * ss, st, yp + size_t(b) * ds, dt, size_t(e - b));
    }
  });
}

}  // namespace sd::cpu
