// The whole-UNet error of an int8 compute mode, before building one (issue 14, item 4):
// `streamdiff_bench quant-error` runs the UNet on the f32 CPU backend twice per scheme, once as is
// and once through a backend that rounds what an int8 mode would round, and prints
// ||eps - eps_f32|| / ||eps_f32|| of the output. The rounding ("fake quantization") is the
// int8 mode's arithmetic up to the order of the f32 sums: every convolution and linear layer
// gets its weights quantized per output channel (symmetric, scale = max |w| / levels) and its
// input per tensor at run time (symmetric, scale = max |x| / 127), then multiplies in f32.
// Attention, norms and activations stay f32, as they would in such a mode. Schemes:
//   no rounding   the harness itself (must print 0);
//   int8 w8       8-bit weights everywhere (what a VNNI CPU runs without saturating);
//   int8 w7 mm    7-bit weights in linear layers (oneDNN's AVX2 int8 matmul saturates with 8),
//                 8-bit in convolutions: what this AVX2 machine would run;
//   int8 rows     8-bit weights, inputs quantized per row (per pixel or token, over its
//                 channels) instead of per tensor: a finer scheme, which oneDNN could apply as
//                 a per-row scale after the product (a binary post-op);
//   weights only  8-bit weights, f32 activations (an int8 storage format, f32 compute);
//   bf16 inputs   weights and layer inputs rounded to bf16 the same way: the yardstick, since
//                 bf16 compute is what streamdiff already ships on AVX512-BF16 CPUs.
// Weights are the hash-random ones of the benchmarks (uniform, no outliers): trained weights
// have heavier tails, which per-channel scales absorb less well, so read these errors as a
// lower bound. Environment: SD_BENCH_INT8_ARCHS (default "sd21,sdxs-512"), 256² latents.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "bench.h"
#include "core/dtype.h"
#include "models/unet.h"
#include "models/unet_hash_weights.h"

namespace {

using namespace sd;

struct Scheme {
  const char* name;
  float conv_levels;    // weight levels (127 = 8 bits, 63 = 7 bits); 0: no int8 weights
  float linear_levels;  //
  bool int8_inputs;     // layer inputs per tensor to 8 bits
  bool per_row;         // ... per row (last dimension) instead
  bool bf16;            // weights and layer inputs rounded to bf16 instead
};

float round_bf16(float v) {
  return to_float(to_bf16(v));
}

// Symmetric int8 rounding of n values with scale max |v| / levels.
void fake_quant(float* v, int64_t n, float levels) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(v[i]));
  if (m == 0) return;
  const float scale = m / levels;
  for (int64_t i = 0; i < n; ++i)
    v[i] = std::clamp(std::nearbyint(v[i] / scale), -levels, levels) * scale;
}

// Forwards everything to an f32 CPU backend, rounding the weights of convolutions and linear
// layers when they are made and their inputs when they run, as `scheme` says.
class RoundingBackend final : public Backend {
 public:
  RoundingBackend(Backend& inner, Scheme scheme)
      : Backend(inner.compute_dtype()), in_(inner), s_(scheme) {
    init_arena(inner.device());
  }
  Device device() const override { return in_.device(); }
  std::string description() const override {
    return in_.description() + ", rounding as " + s_.name;
  }
  StorageRef allocate(size_t bytes) override { return in_.allocate(bytes); }
  void copy_from_host(const Tensor& h, const Tensor& d) override { in_.copy_from_host(h, d); }
  void copy_to_host(const Tensor& d, const Tensor& h) override { in_.copy_to_host(d, h); }
  void synchronize() override { in_.synchronize(); }

  Weight conv_weight(const Tensor& w) override {
    return in_.conv_weight(rounded_weight(w, s_.conv_levels));
  }
  Weight linear_weight(const Tensor& w) override {
    return in_.linear_weight(rounded_weight(w, s_.linear_levels));
  }
  Weight vector(const Tensor& v) override { return in_.vector(v); }
  void update_weight(const Weight& w, const Tensor& host) override {
    in_.update_weight(w, rounded_weight(host, w.t.rank() == 4 ? s_.conv_levels : s_.linear_levels));
  }

  Tensor conv2d(const Tensor& x, const Weight& w, const Weight* bias, Conv2dParams p, Act act,
                const Tensor* residual) override {
    return in_.conv2d(rounded_input(x), w, bias, p, act, residual);
  }
  Tensor linear(const Tensor& x, const Weight& w, const Weight* bias, Act act,
                const Tensor* residual) override {
    return in_.linear(rounded_input(x), w, bias, act, residual);
  }
  Tensor group_norm(const Tensor& x, int groups, const Weight& gamma, const Weight& beta, float eps,
                    Act act) override {
    return in_.group_norm(x, groups, gamma, beta, eps, act);
  }
  Tensor layer_norm(const Tensor& x, const Weight& gamma, const Weight& beta, float eps) override {
    return in_.layer_norm(x, gamma, beta, eps);
  }
  Tensor activate(const Tensor& x, Act act) override { return in_.activate(x, act); }
  Tensor geglu(const Tensor& x) override { return in_.geglu(x); }
  Tensor softmax(const Tensor& x, float scale) override { return in_.softmax(x, scale); }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads,
                   bool causal) override {
    return in_.attention(q, k, v, heads, causal);
  }
  Tensor upsample_nearest2x(const Tensor& x) override { return in_.upsample_nearest2x(x); }
  Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) override {
    return in_.binary(op, a, b);
  }
  Tensor scale(const Tensor& x, float alpha, float beta) override {
    return in_.scale(x, alpha, beta);
  }
  Tensor concat_channels(const Tensor& a, const Tensor& b) override {
    return in_.concat_channels(a, b);
  }
  Tensor cast(const Tensor& x, DType dtype) override { return in_.cast(x, dtype); }

 private:
  // A host f32 copy of `w` ([out, ...]) rounded per output channel.
  Tensor rounded_weight(const Tensor& w, float levels) const {
    Tensor r = w.to_host_dtype(DType::F32);
    if (r.data() == w.data()) {  // to_host_dtype may return `w` itself
      Tensor copy = Tensor::host(w.shape(), DType::F32);
      std::copy_n(w.data_as<float>(), w.numel(), copy.data_as<float>());
      r = copy;
    }
    float* p = r.data_as<float>();
    const int64_t rows = r.dim(0), cols = r.numel() / rows;
    for (int64_t o = 0; o < rows; ++o) {
      float* row = p + o * cols;
      if (s_.bf16)
        for (int64_t i = 0; i < cols; ++i) row[i] = round_bf16(row[i]);
      else if (levels > 0)
        fake_quant(row, cols, levels);
    }
    return r;
  }
  Tensor rounded_input(const Tensor& x) {
    if (!s_.int8_inputs && !s_.bf16) return x;
    in_.synchronize();  // x may still be being written
    Tensor r = in_.alloc(x.shape(), DType::F32);
    const float* src = x.data_as<float>();
    float* dst = r.data_as<float>();
    std::copy_n(src, x.numel(), dst);
    if (s_.bf16)
      for (int64_t i = 0; i < x.numel(); ++i) dst[i] = round_bf16(dst[i]);
    else if (!s_.per_row)
      fake_quant(dst, x.numel(), 127.f);
    else
      for (int64_t i = 0, c = x.dim(x.rank() - 1); i < x.numel(); i += c)
        fake_quant(dst + i, c, 127.f);
    return r;
  }

  Backend& in_;
  Scheme s_;
};

Tensor normal_input(Backend& b, const Shape& shape, uint32_t seed, float sigma) {
  Tensor h = Tensor::host(shape, DType::F32);
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, sigma);
  for (int64_t i = 0; i < h.numel(); ++i) h.data_as<float>()[i] = dist(gen);
  Tensor d = b.empty(shape, DType::F32);
  b.copy_from_host(h, d);
  b.synchronize();
  return d;
}

double rel_error(const Tensor& a, const Tensor& ref) {
  const float* x = a.data_as<float>();
  const float* y = ref.data_as<float>();
  double num = 0, den = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    num += double(x[i] - y[i]) * double(x[i] - y[i]);
    den += double(y[i]) * double(y[i]);
  }
  return std::sqrt(num / den);
}

// eps of one UNet pass at 256² (batch 1, timestep t) with the weights made through `b`.
Tensor unet_eps(Backend& b, Backend& f32, const UNetConfig& config, float t) {
  HashUNetWeights weights;
  auto model = UNet::create(config, weights, b);
  // The same inputs for every scheme: N(0, 1) latents (x_t has unit variance) and text states
  // of CLIP's scale, made on the plain f32 backend.
  Tensor sample = normal_input(f32, Shape{1, 32, 32, config.in_channels}, 7, 1.f);
  Tensor states = normal_input(f32, Shape{1, 77, config.cross_attention_dim}, 11, 1.f);
  Tensor y = b.download(model->forward(sample, {t}, states));
  return y;
}

}  // namespace

SD_BENCH("quant-error") {
  BackendOptions opts;
  opts.dtype = "f32";
  auto f32 = make_backend(opts);
  std::printf("backend: %s\n", f32->description().c_str());
  const char* env = std::getenv("SD_BENCH_INT8_ARCHS");
  std::stringstream archs(env && *env ? env : "sd21,sdxs-512");
  // "no rounding" must print 0: the harness compares like with like, deterministically.
  const Scheme schemes[] = {
      {"no rounding", 0, 0, false, false, false},      {"int8 w8", 127, 127, true, false, false},
      {"int8 w7 mm", 127, 63, true, false, false},     {"int8 rows", 127, 127, true, true, false},
      {"weights only", 127, 127, false, false, false}, {"bf16 inputs", 0, 0, false, false, true}};
  for (std::string arch; std::getline(archs, arch, ',');) {
    const UNetConfig config = reference_unet_config(arch);
    for (float t : {999.f, 500.f}) {
      const Tensor ref = unet_eps(*f32, *f32, config, t);
      std::printf("quant-error %s 256x256 t=%.0f:", arch.c_str(), t);
      for (const Scheme& s : schemes) {
        RoundingBackend rounding(*f32, s);
        std::printf("  %s %.2e", s.name, rel_error(unet_eps(rounding, *f32, config, t), ref));
        std::fflush(stdout);
      }
      std::printf("\n");
    }
  }
}
