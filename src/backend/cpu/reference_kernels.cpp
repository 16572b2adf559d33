#include "backend/cpu/reference_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace sd::ref {

namespace {

// A host f32 copy (or the tensor itself when it already is one).
Tensor as_f32(const Tensor& t, const char* what) {
  SD_CHECK(t.device() == Device::CPU, "reference ", what, ": tensor ", t.shape().str(), " is on ",
           device_name(t.device()), ", expected a host tensor");
  SD_CHECK(t.is_contiguous(), "reference ", what, ": tensor ", t.shape().str(),
           " is not contiguous");
  return t.dtype() == DType::F32 ? t : t.to_host_dtype(DType::F32);
}

const float* f32_data(const Tensor& t) {
  return static_cast<const float*>(t.data());
}
float* f32_data_mut(const Tensor& t) {
  return static_cast<float*>(t.data());
}

Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r[-1] = last;
  return r;
}

}  // namespace

double activate(double x, Act act) {
  switch (act) {
    case Act::None:
      return x;
    case Act::ReLU:
      return x > 0 ? x : 0;
    case Act::SiLU:
      return x / (1 + std::exp(-x));
    case Act::GELU:
      return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Act::GELUTanh: {
      // 0.5·x·(1 + tanh(u)) written as x / (1 + e^{−2u}): the same function, without the
      // cancellation of 1 + tanh(u) for very negative u.
      const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
      return x / (1 + std::exp(-2 * u));
    }
    case Act::Tanh:
      return std::tanh(x);
  }
  return x;
}

Tensor conv2d(const Tensor& x_nhwc, const Tensor& w_oihw, const Tensor* bias, Conv2dParams p,
              Act act, const Tensor* residual) {
  Tensor x = as_f32(x_nhwc, "conv2d x");
  Tensor w = as_f32(w_oihw, "conv2d weight");
  SD_CHECK(x.rank() == 4 && w.rank() == 4, "reference conv2d: x ", x.shape().str(), " weight ",
           w.shape().str(), " (expected NHWC and OIHW)");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const int64_t O = w.dim(0), KH = w.dim(2), KW = w.dim(3);
  SD_CHECK(w.dim(1) == C, "reference conv2d: weight ", w.shape().str(), " does not take ", C,
           " input channels");
  SD_CHECK(p.stride >= 1 && p.pad >= 0, "reference conv2d: stride ", p.stride, " pad ", p.pad);
  const int64_t HO = (H + 2 * p.pad - KH) / p.stride + 1;
  const int64_t WO = (W + 2 * p.pad - KW) / p.stride + 1;
  SD_CHECK(HO > 0 && WO > 0, "reference conv2d: empty output for x ", x.shape().str());
  Tensor b, r;
  if (bias) b = as_f32(*bias, "conv2d bias");
  if (residual) r = as_f32(*residual, "conv2d residual");
  SD_CHECK(!bias || b.numel() == O, "reference conv2d: bias ", b.shape().str(), " for ", O,
           " outputs");
  Tensor y = Tensor::host({N, HO, WO, O}, DType::F32);
  SD_CHECK(!residual || r.shape() == y.shape(), "reference conv2d: residual ", r.shape().str(),
           " != output ", y.shape().str());
  const float *xp = f32_data(x), *wp = f32_data(w);
  float* yp = f32_data_mut(y);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < HO; ++oh)
      for (int64_t ow = 0; ow < WO; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          double acc = bias ? f32_data(b)[o] : 0.0;
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * p.stride - p.pad + kh;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t iw = ow * p.stride - p.pad + kw;
              if (iw < 0 || iw >= W) continue;
              for (int64_t c = 0; c < C; ++c)
                acc += double(xp[((n * H + ih) * W + iw) * C + c]) *
                       wp[((o * C + c) * KH + kh) * KW + kw];
            }
          }
          const int64_t yi = ((n * HO + oh) * WO + ow) * O + o;
          if (residual) acc += f32_data(r)[yi];
          yp[yi] = float(activate(acc, act));
        }
  return y;
}

Tensor linear(const Tensor& x_in, const Tensor& w_out_in, const Tensor* bias, Act act,
              const Tensor* residual) {
  Tensor x = as_f32(x_in, "linear x");
  Tensor w = as_f32(w_out_in, "linear weight");
  SD_CHECK(w.rank() == 2 && x.rank() >= 1 && x.dim(-1) == w.dim(1), "reference linear: x ",
           x.shape().str(), " weight ", w.shape().str());
  const int64_t K = w.dim(1), O = w.dim(0), M = x.numel() / K;
  Tensor b, r;
  if (bias) b = as_f32(*bias, "linear bias");
  if (residual) r = as_f32(*residual, "linear residual");
  Tensor y = Tensor::host(with_last(x.shape(), O), DType::F32);
  SD_CHECK(!bias || b.numel() == O, "reference linear: bias ", b.shape().str());
  SD_CHECK(!residual || r.shape() == y.shape(), "reference linear: residual ", r.shape().str(),
           " != output ", y.shape().str());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t o = 0; o < O; ++o) {
      double acc = bias ? f32_data(b)[o] : 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(f32_data(x)[m * K + k]) * f32_data(w)[o * K + k];
      if (residual) acc += f32_data(r)[m * O + o];
      f32_data_mut(y)[m * O + o] = float(activate(acc, act));
    }
  return y;
}

Tensor group_norm(const Tensor& x_in, int groups, const Tensor& gamma_in, const Tensor& beta_in,
                  float eps, Act act) {
  Tensor x = as_f32(x_in, "group_norm x");
  Tensor gamma = as_f32(gamma_in, "group_norm gamma"), beta = as_f32(beta_in, "group_norm beta");
  SD_CHECK(x.rank() >= 2, "reference group_norm: x ", x.shape().str());
  const int64_t N = x.dim(0), C = x.dim(-1), P = x.numel() / (N * C);
  SD_CHECK(groups > 0 && C % groups == 0, "reference group_norm: ", C, " channels in ", groups,
           " groups");
  SD_CHECK(gamma.numel() == C && beta.numel() == C, "reference group_norm: gamma/beta size");
  const int64_t CG = C / groups;
  Tensor y = Tensor::host(x.shape(), DType::F32);
  const float* xp = f32_data(x);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < P; ++i)
        for (int64_t c = g * CG; c < (g + 1) * CG; ++c) sum += xp[(n * P + i) * C + c];
      const double mean = sum / double(P * CG);
      for (int64_t i = 0; i < P; ++i)
        for (int64_t c = g * CG; c < (g + 1) * CG; ++c) {
          const double d = xp[(n * P + i) * C + c] - mean;
          sq += d * d;
        }
      const double rstd = 1.0 / std::sqrt(sq / double(P * CG) + eps);
      for (int64_t i = 0; i < P; ++i)
        for (int64_t c = g * CG; c < (g + 1) * CG; ++c) {
          const int64_t j = (n * P + i) * C + c;
          const double v = (xp[j] - mean) * rstd * f32_data(gamma)[c] + f32_data(beta)[c];
          f32_data_mut(y)[j] = float(activate(v, act));
        }
    }
  return y;
}

Tensor layer_norm(const Tensor& x_in, const Tensor& gamma_in, const Tensor& beta_in, float eps) {
  Tensor x = as_f32(x_in, "layer_norm x");
  Tensor gamma = as_f32(gamma_in, "layer_norm gamma"), beta = as_f32(beta_in, "layer_norm beta");
  const int64_t C = x.dim(-1), rows = x.numel() / C;
  SD_CHECK(gamma.numel() == C && beta.numel() == C, "reference layer_norm: gamma/beta size");
  Tensor y = Tensor::host(x.shape(), DType::F32);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = f32_data(x) + r * C;
    double sum = 0, sq = 0;
    for (int64_t c = 0; c < C; ++c) sum += row[c];
    const double mean = sum / double(C);
    for (int64_t c = 0; c < C; ++c) sq += (row[c] - mean) * (row[c] - mean);
    const double rstd = 1.0 / std::sqrt(sq / double(C) + eps);
    for (int64_t c = 0; c < C; ++c)
      f32_data_mut(y)[r * C + c] =
          float((row[c] - mean) * rstd * f32_data(gamma)[c] + f32_data(beta)[c]);
  }
  return y;
}

Tensor activate(const Tensor& x_in, Act act) {
  Tensor x = as_f32(x_in, "activate x");
  Tensor y = Tensor::host(x.shape(), DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) f32_data_mut(y)[i] = float(activate(f32_data(x)[i], act));
  return y;
}

Tensor geglu(const Tensor& x_in) {
  Tensor x = as_f32(x_in, "geglu x");
  SD_CHECK(x.dim(-1) % 2 == 0, "reference geglu: last dimension of ", x.shape().str(), " is odd");
  const int64_t F = x.dim(-1) / 2, rows = x.numel() / (2 * F);
  Tensor y = Tensor::host(with_last(x.shape(), F), DType::F32);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t f = 0; f < F; ++f) {
      const double a = f32_data(x)[r * 2 * F + f], g = f32_data(x)[r * 2 * F + F + f];
      f32_data_mut(y)[r * F + f] = float(a * activate(g, Act::GELU));
    }
  return y;
}

Tensor softmax(const Tensor& x_in, float scale) {
  Tensor x = as_f32(x_in, "softmax x");
  const int64_t C = x.dim(-1), rows = x.numel() / C;
  Tensor y = Tensor::host(x.shape(), DType::F32);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = f32_data(x) + r * C;
    double mx = -std::numeric_limits<double>::infinity(), sum = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, double(row[c]) * scale);
    for (int64_t c = 0; c < C; ++c) sum += std::exp(double(row[c]) * scale - mx);
    for (int64_t c = 0; c < C; ++c)
      f32_data_mut(y)[r * C + c] = float(std::exp(double(row[c]) * scale - mx) / sum);
  }
  return y;
}

Tensor attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int heads,
                 bool causal) {
  Tensor q = as_f32(q_in, "attention q"), k = as_f32(k_in, "attention k");
  Tensor v = as_f32(v_in, "attention v");
  SD_CHECK(q.rank() == 3 && k.rank() == 3 && v.shape() == k.shape() && q.dim(0) == k.dim(0) &&
               q.dim(2) == k.dim(2) && heads > 0 && q.dim(2) % heads == 0,
           "reference attention: q ", q.shape().str(), " k ", k.shape().str(), " v ",
           v.shape().str(), " heads ", heads);
  const int64_t B = q.dim(0), LQ = q.dim(1), LK = k.dim(1), HD = q.dim(2), D = HD / heads;
  const double scale = 1.0 / std::sqrt(double(D));
  Tensor out = Tensor::host(q.shape(), DType::F32);
  std::vector<double> s(static_cast<size_t>(LK));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < LQ; ++i) {
        const float* qi = f32_data(q) + (b * LQ + i) * HD + h * D;
        const int64_t n_keys = causal ? std::min(LK, i + 1) : LK;
        double mx = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int64_t j = 0; j < n_keys; ++j) {
          const float* kj = f32_data(k) + (b * LK + j) * HD + h * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * kj[d];
          s[size_t(j)] = dot * scale;
          mx = std::max(mx, s[size_t(j)]);
        }
        for (int64_t j = 0; j < n_keys; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < n_keys; ++j)
            acc += s[size_t(j)] * f32_data(v)[(b * LK + j) * HD + h * D + d];
          f32_data_mut(out)[(b * LQ + i) * HD + h * D + d] = float(acc / sum);
        }
      }
  return out;
}

Tensor upsample_nearest2x(const Tensor& x_in) {
  Tensor x = as_f32(x_in, "upsample x");
  SD_CHECK(x.rank() == 4, "reference upsample: x ", x.shape().str(), " is not NHWC");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Tensor y = Tensor::host({N, 2 * H, 2 * W, C}, DType::F32);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < 2 * H; ++oh)
      for (int64_t ow = 0; ow < 2 * W; ++ow)
        for (int64_t c = 0; c < C; ++c)
          f32_data_mut(y)[((n * 2 * H + oh) * 2 * W + ow) * C + c] =
              f32_data(x)[((n * H + oh / 2) * W + ow / 2) * C + c];
  return y;
}

Shape broadcast_shape(const Shape& a, const Shape& b) {
  Shape out;
  out.rank = std::max(a.rank, b.rank);
  for (int i = 1; i <= out.rank; ++i) {
    const int64_t da = i <= a.rank ? a[-i] : 1, db = i <= b.rank ? b[-i] : 1;
    SD_CHECK(da == db || da == 1 || db == 1, "shapes ", a.str(), " and ", b.str(),
             " do not broadcast");
    out[-i] = da == 1 ? db : da;
  }
  return out;
}

Tensor binary(BinaryOp op, const Tensor& a_in, const Tensor& b_in) {
  Tensor a = as_f32(a_in, "binary a"), b = as_f32(b_in, "binary b");
  const Shape out = broadcast_shape(a.shape(), b.shape());
  Tensor y = Tensor::host(out, DType::F32);
  int64_t idx[Shape::kMaxRank] = {};
  for (int64_t i = 0; i < y.numel(); ++i) {
    // Flat offsets of the source elements for the output multi-index idx.
    int64_t ia = 0, ib = 0;
    for (int d = 0; d < out.rank; ++d) {
      const int ra = d - (out.rank - a.rank()), rb = d - (out.rank - b.rank());
      if (ra >= 0) ia = ia * a.dim(ra) + (a.dim(ra) == 1 ? 0 : idx[d]);
      if (rb >= 0) ib = ib * b.dim(rb) + (b.dim(rb) == 1 ? 0 : idx[d]);
    }
    const double va = f32_data(a)[ia], vb = f32_data(b)[ib];
    double r = 0;
    switch (op) {
      case BinaryOp::Add:
        r = va + vb;
        break;
      case BinaryOp::Sub:
        r = va - vb;
        break;
      case BinaryOp::Mul:
        r = va * vb;
        break;
      case BinaryOp::Div:
        r = va / vb;
        break;
    }
    f32_data_mut(y)[i] = float(r);
    for (int d = out.rank - 1; d >= 0 && ++idx[d] == out[d]; --d) idx[d] = 0;
  }
  return y;
}

Tensor scale(const Tensor& x_in, float alpha, float beta) {
  Tensor x = as_f32(x_in, "scale x");
  Tensor y = Tensor::host(x.shape(), DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i)
    f32_data_mut(y)[i] = float(double(alpha) * f32_data(x)[i] + beta);
  return y;
}

Tensor concat_channels(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = as_f32(a_in, "concat a"), b = as_f32(b_in, "concat b");
  SD_CHECK(a.rank() == b.rank() && a.rank() >= 1 && a.numel() / a.dim(-1) == b.numel() / b.dim(-1),
           "reference concat_channels: ", a.shape().str(), " and ", b.shape().str());
  const int64_t CA = a.dim(-1), CB = b.dim(-1), rows = a.numel() / CA;
  Tensor y = Tensor::host(with_last(a.shape(), CA + CB), DType::F32);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < CA; ++c) f32_data_mut(y)[r * (CA + CB) + c] = f32_data(a)[r * CA + c];
    for (int64_t c = 0; c < CB; ++c)
      f32_data_mut(y)[r * (CA + CB) + CA + c] = f32_data(b)[r * CB + c];
  }
  return y;
}

Tensor cast(const Tensor& x, DType dtype) {
  SD_CHECK(x.device() == Device::CPU, "reference cast: tensor is not on the host");
  Tensor y = Tensor::host(x.shape(), dtype);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float v = 0;
    switch (x.dtype()) {
      case DType::F32:
        v = static_cast<const float*>(x.data())[i];
        break;
      case DType::F16:
        v = to_float(static_cast<const f16*>(x.data())[i]);
        break;
      case DType::BF16:
        v = to_float(static_cast<const bf16*>(x.data())[i]);
        break;
    }
    switch (dtype) {
      case DType::F32:
        static_cast<float*>(y.data())[i] = v;
        break;
      case DType::F16:
        static_cast<f16*>(y.data())[i] = to_f16(v);
        break;
      case DType::BF16:
        static_cast<bf16*>(y.data())[i] = to_bf16(v);
        break;
    }
  }
  return y;
}

double rel_error(const Tensor& ours_in, const Tensor& ref_in) {
  SD_CHECK(ours_in.shape() == ref_in.shape(), "rel_error: shapes ", ours_in.shape().str(), " and ",
           ref_in.shape().str(), " differ");
  Tensor ours = as_f32(ours_in, "rel_error ours"), ref = as_f32(ref_in, "rel_error ref");
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double d = double(f32_data(ours)[i]) - f32_data(ref)[i];
    diff += d * d;
    norm += double(f32_data(ref)[i]) * f32_data(ref)[i];
  }
  if (std::isnan(diff)) return std::numeric_limits<double>::infinity();
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace sd::ref
