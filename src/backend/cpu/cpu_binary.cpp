// Elementwise binary ops with numpy broadcasting. The broadcast is reduced to an outer loop
// over "rows" and a contiguous inner loop: dimensions of size 1 are dropped and neighbours
// that both inputs step through uniformly are merged (so [N,H,W,C] + [C] is rows of C, and
// [N,H,W,C] + [N,1,1,C] is N × HW rows of C), and the inner loop is specialised for each input
// being either contiguous or a broadcast scalar.
#include <algorithm>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/math_approx.h"

namespace sd::cpu {

namespace {

constexpr int64_t kInnerBlock = 16384;

template <BinaryOp OP>
inline float apply(float a, float b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  if constexpr (OP == BinaryOp::Sub) return a - b;
  if constexpr (OP == BinaryOp::Mul) return a * b;
  return a / b;
}

// y[i] = a[i*sa] op b[i*sb] for i in [0, n), sa and sb each 0 or 1.
template <typename T, BinaryOp OP>
void inner(const T* a, int64_t sa, const T* b, int64_t sb, T* y, int64_t n) {
  if (sa && sb) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) store(y, i, apply<OP>(load(a, i), load(b, i)));
  } else if (sa) {
    const float bv = load(b, 0);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) store(y, i, apply<OP>(load(a, i), bv));
  } else if (sb) {
    const float av = load(a, 0);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) store(y, i, apply<OP>(av, load(b, i)));
  } else {
    const float v = apply<OP>(load(a, 0), load(b, 0));
    for (int64_t i = 0; i < n; ++i) store(y, i, v);
  }
}

struct Broadcast {
  int rank = 0;  // collapsed rank, >= 1
  int64_t dims[Shape::kMaxRank] = {};
  int64_t sa[Shape::kMaxRank] = {}, sb[Shape::kMaxRank] = {};  // element strides, 0 = broadcast
};

Broadcast collapse(const Shape& a, const Shape& b, const Shape& out) {
  // Strides of a and b in the output's (right-aligned) coordinates.
  int64_t sa[Shape::kMaxRank], sb[Shape::kMaxRank];
  int64_t ra = 1, rb = 1;
  for (int i = out.rank - 1; i >= 0; --i) {
    const int ia = i - (out.rank - a.rank), ib = i - (out.rank - b.rank);
    const int64_t da = ia >= 0 ? a.dims[ia] : 1, db = ib >= 0 ? b.dims[ib] : 1;
    sa[i] = da == 1 ? 0 : ra;
    sb[i] = db == 1 ? 0 : rb;
    ra *= da;
    rb *= db;
  }
  Broadcast r;
  for (int i = 0; i < out.rank; ++i) {
    if (out.dims[i] == 1) continue;
    const int k = r.rank - 1;
    if (k >= 0 && r.sa[k] == sa[i] * out.dims[i] && r.sb[k] == sb[i] * out.dims[i]) {
      r.dims[k] *= out.dims[i];  // merge into the previous (outer) dimension
      r.sa[k] = sa[i];
      r.sb[k] = sb[i];
    } else {
      r.dims[r.rank] = out.dims[i];
      r.sa[r.rank] = sa[i];
      r.sb[r.rank] = sb[i];
      ++r.rank;
    }
  }
  if (r.rank == 0) {  // a single element
    r.rank = 1;
    r.dims[0] = 1;
  }
  return r;
}

template <typename T, BinaryOp OP>
void run(const Broadcast& bc, const T* a, const T* b, T* y) {
  const int k = bc.rank - 1;
  const int64_t n_inner = bc.dims[k];
  int64_t outer = 1;
  for (int i = 0; i < k; ++i) outer *= bc.dims[i];
  const int64_t pieces = (n_inner + kInnerBlock - 1) / kInnerBlock;
  const int64_t items = outer * pieces;
#pragma omp parallel for schedule(static) if (items > 1 && outer * n_inner > kInnerBlock)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t o = it / pieces, p0 = (it % pieces) * kInnerBlock;
    int64_t oa = 0, ob = 0, rest = o;
    for (int i = k - 1; i >= 0; --i) {
      const int64_t idx = rest % bc.dims[i];
      rest /= bc.dims[i];
      oa += idx * bc.sa[i];
      ob += idx * bc.sb[i];
    }
    const int64_t n = std::min(kInnerBlock, n_inner - p0);
    inner<T, OP>(a + oa + p0 * bc.sa[k], bc.sa[k], b + ob + p0 * bc.sb[k], bc.sb[k],
                 y + o * n_inner + p0, n);
  }
}

}  // namespace

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) {
  for (const Tensor* t : {&a, &b, &y})
    SD_CHECK(t->device() == Device::CPU && t->defined() && t->is_contiguous(), "binary: tensor ",
             t->shape().str(), " must be a contiguous host tensor");
  SD_CHECK(a.dtype() == b.dtype() && a.dtype() == y.dtype(), "binary: dtypes ",
           dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " -> ", dtype_name(y.dtype()),
           " must be equal");
  // y's shape must be the broadcast of a's and b's.
  SD_CHECK(y.rank() == std::max(a.rank(), b.rank()), "binary: output rank of ", y.shape().str());
  for (int i = 1; i <= y.rank(); ++i) {
    const int64_t da = i <= a.rank() ? a.dim(-i) : 1, db = i <= b.rank() ? b.dim(-i) : 1;
    SD_CHECK(
        (da == db || da == 1 || db == 1) && y.dim(-i) == std::max(da, db) && (da != 0 && db != 0),
        "binary: shapes ", a.shape().str(), " and ", b.shape().str(), " do not broadcast to ",
        y.shape().str());
  }
  if (y.numel() == 0) return;
  const Broadcast bc = collapse(a.shape(), b.shape(), y.shape());
  auto go = [&]<typename T>() {
    const T *ap = static_cast<const T*>(a.data()), *bp = static_cast<const T*>(b.data());
    T* yp = static_cast<T*>(y.data());
    switch (op) {
      case BinaryOp::Add:
        run<T, BinaryOp::Add>(bc, ap, bp, yp);
        break;
      case BinaryOp::Sub:
        run<T, BinaryOp::Sub>(bc, ap, bp, yp);
        break;
      case BinaryOp::Mul:
        run<T, BinaryOp::Mul>(bc, ap, bp, yp);
        break;
      case BinaryOp::Div:
        run<T, BinaryOp::Div>(bc, ap, bp, yp);
        break;
    }
  };
  if (a.dtype() == DType::F32) {
    go.template operator()<float>();
  } else if (a.dtype() == DType::BF16) {
    go.template operator()<bf16>();
  } else {
    fail("binary: ", dtype_name(a.dtype()), " tensors are not supported (expected f32 or bf16)");
  }
}

}  // namespace sd::cpu
