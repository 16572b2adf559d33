// The fused attention kernel (backend/cpu/flash_attention.h) against the reference twin
// (ref::attention) on awkward shapes, on every instruction set this CPU runs (the others are
// skipped and say so): 77 keys (the text context), odd lengths, one query or key, lengths
// across key-block and query-block boundaries, head dims 1, 3, 40, 64, 80, 160 and 200,
// causal masks, f32 and bf16 storage, and q, k, v as column ranges of one packed projection.
// Tolerances (‖ours − ref‖ / ‖ref‖): 1e-4 in f32, 2e-2 in bf16.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/flash_attention.h"
#include "backend/cpu/reference_kernels.h"

namespace sd {
namespace {

using cpu::FlashIsa;

Tensor random_host(const Shape& s, uint32_t seed, float lo, float hi) {
  Tensor t = Tensor::host(s, DType::F32);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = dist(gen);
  return t;
}

struct Case {
  int64_t b, lq, lk, heads, d;
  bool causal;
};

// Lengths around the query block (192) and key block (256) and the ISAs' tiles (MR 4/6/12, KT
// 16/32); the UNet's shapes (77 keys; head dims 40, 64, 80, 160).
const Case kCases[] = {
    {1, 1, 1, 1, 1, false},      {1, 7, 77, 8, 40, false},    {2, 13, 29, 3, 5, false},
    {1, 77, 77, 4, 16, true},    {2, 20, 20, 2, 8, true},     {1, 97, 77, 5, 64, false},
    {1, 200, 131, 2, 80, false}, {1, 130, 130, 3, 64, true},  {1, 33, 257, 2, 160, false},
    {2, 50, 50, 3, 3, true},     {1, 96, 128, 1, 200, false}, {1, 193, 300, 2, 40, true},
    {1, 256, 256, 8, 40, false}, {3, 5, 1, 2, 24, false},
};

class FlashAttention : public ::testing::TestWithParam<std::tuple<FlashIsa, DType>> {
 protected:
  void SetUp() override {
    if (!cpu::flash_isa_available(isa()))
      GTEST_SKIP() << "this CPU or build has no " << cpu::flash_isa_name(isa()) << " kernel";
  }
  FlashIsa isa() const { return std::get<0>(GetParam()); }
  DType dt() const { return std::get<1>(GetParam()); }
  double tol() const { return dt() == DType::F32 ? 1e-4 : 2e-2; }

  // Runs the kernel on host tensors of dt() (q, k, v with the given row strides inside
  // buffers, columns [offset, offset + H·D)); returns out as f32.
  Tensor run(const Case& c, const Tensor& q, const Tensor& k, const Tensor& v, bool packed) {
    const int64_t hd = c.heads * c.d;
    cpu::FlashArgs a;
    Tensor qs, ks, vs;
    if (packed) {
      // One [B, L, 3·H·D] buffer as a fused QKV projection makes it (Lq = Lk here).
      Tensor qkv = Tensor::host({c.b, c.lq, 3 * hd}, dt());
      const size_t es = dtype_size(dt());
      for (int64_t r = 0; r < c.b * c.lq; ++r)
        for (int part = 0; part < 3; ++part) {
          const Tensor& src = part == 0 ? q : part == 1 ? k : v;
          std::memcpy(static_cast<char*>(qkv.data()) + size_t(r * 3 * hd + part * hd) * es,
                      static_cast<const char*>(src.data()) + size_t(r * hd) * es, size_t(hd) * es);
        }
      qs = qkv;
      a.q = qkv.data();
      a.k = static_cast<const char*>(qkv.data()) + size_t(hd) * es;
      a.v = static_cast<const char*>(qkv.data()) + size_t(2 * hd) * es;
      a.q_stride = a.k_stride = a.v_stride = 3 * hd;
    } else {
      a.q = q.data(), a.k = k.data(), a.v = v.data();
      a.q_stride = a.k_stride = a.v_stride = hd;
    }
    Tensor out = Tensor::host({c.b, c.lq, hd}, dt());
    a.out = out.data();
    a.out_stride = hd;
    a.batch = c.b, a.lq = c.lq, a.lk = c.lk, a.heads = c.heads, a.head_dim = c.d;
    a.causal = c.causal;
    a.dtype = dt();
    const int threads = 2;
    const size_t bytes = cpu::flash_attention_workspace(a, isa(), threads);
    void* ws = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    cpu::flash_attention(a, isa(), threads, ws);
    std::free(ws);
    return out.to_host_dtype(DType::F32);
  }
};

TEST_P(FlashAttention, MatchesReference) {
  uint32_t seed = 1000;
  for (const Case& c : kCases) {
    SCOPED_TRACE(testing::Message() << "B " << c.b << " Lq " << c.lq << " Lk " << c.lk << " H "
                                    << c.heads << " D " << c.d << " causal " << c.causal);
    const int64_t hd = c.heads * c.d;
    // Scores of several units (±2 inputs), so the softmax is neither flat nor one-hot.
    Tensor q = random_host({c.b, c.lq, hd}, seed++, -2.f, 2.f).to_host_dtype(dt());
    Tensor k = random_host({c.b, c.lk, hd}, seed++, -2.f, 2.f).to_host_dtype(dt());
    Tensor v = random_host({c.b, c.lk, hd}, seed++, -1.f, 1.f).to_host_dtype(dt());
    const Tensor expect = ref::attention(q, k, v, int(c.heads), c.causal);
    EXPECT_LE(ref::rel_error(run(c, q, k, v, false), expect), tol());
    if (c.lq == c.lk) {
      EXPECT_LE(ref::rel_error(run(c, q, k, v, true), expect), tol());
    }
  }
}

// Large score ranges: the online softmax must rescale earlier blocks when a later block holds
// the maximum (keys sorted by increasing score), and must not overflow or underflow.
TEST_P(FlashAttention, RescalesAcrossKeyBlocks) {
  const Case c{1, 37, 1000, 2, 64, false};
  const int64_t hd = c.heads * c.d;
  Tensor q = random_host({1, c.lq, hd}, 7, 0.5f, 1.f);
  Tensor k = Tensor::host({1, c.lk, hd}, DType::F32);
  for (int64_t j = 0; j < c.lk; ++j)
    for (int64_t x = 0; x < hd; ++x) k.data_as<float>()[j * hd + x] = 0.03f * float(j) - 10.f;
  Tensor v = random_host({1, c.lk, hd}, 8, -1.f, 1.f);
  q = q.to_host_dtype(dt()), k = k.to_host_dtype(dt()), v = v.to_host_dtype(dt());
  const Tensor expect = ref::attention(q, k, v, int(c.heads), false);
  EXPECT_LE(ref::rel_error(run(c, q, k, v, false), expect), tol());
}

INSTANTIATE_TEST_SUITE_P(Isas, FlashAttention,
                         ::testing::Combine(::testing::Values(FlashIsa::Generic, FlashIsa::Avx2,
                                                              FlashIsa::Avx512),
                                            ::testing::Values(DType::F32, DType::BF16)),
                         [](const auto& info) {
                           return std::string(cpu::flash_isa_name(std::get<0>(info.param))) + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

// The backend's attention with each kernel gives the reference's result; "auto" picks the
// fused kernel for head dims up to 512 and oneDNN above.
TEST(FlashAttentionBackend, EveryKernelMatchesReference) {
  BackendOptions o;
  o.dtype = "f32";
  auto be = make_backend(o);
  const Tensor q = random_host({2, 45, 3 * 40}, 1, -2.f, 2.f);
  const Tensor k = random_host({2, 77, 3 * 40}, 2, -2.f, 2.f);
  const Tensor v = random_host({2, 77, 3 * 40}, 3, -1.f, 1.f);
  const Tensor expect = ref::attention(q, k, v, 3, false);
  for (const char* kernel : {"auto", "onednn", "generic", "avx2", "avx512"}) {
    SCOPED_TRACE(kernel);
    if (std::string(kernel) == "avx2" && !cpu::flash_isa_available(FlashIsa::Avx2)) continue;
    if (std::string(kernel) == "avx512" && !cpu::flash_isa_available(FlashIsa::Avx512)) {
      EXPECT_THROW(cpu_set_attention_kernel(*be, kernel), Error);
      continue;
    }
    cpu_set_attention_kernel(*be, kernel);
    Tensor y = be->attention(be->upload(q), be->upload(k), be->upload(v), 3);
    EXPECT_LE(ref::rel_error(be->download(y), expect), 1e-4);
  }
  EXPECT_THROW(cpu_set_attention_kernel(*be, "fast"), Error);
}

// STREAMDIFF_CPU_ATTENTION picks the kernel of every CPU backend made after it is set, and the
// backend's description names the kernel; a bad value is an error naming the variable.
TEST(FlashAttentionBackend, EnvironmentPicksTheKernel) {
  BackendOptions o;
  o.dtype = "f32";
  const std::string best = cpu::flash_isa_name(cpu::flash_best_isa());
  EXPECT_NE(make_backend(o)->description().find("attention " + best), std::string::npos);
  ::setenv("STREAMDIFF_CPU_ATTENTION", "onednn", 1);
  const std::string onednn = make_backend(o)->description();
  ::setenv("STREAMDIFF_CPU_ATTENTION", "sse9", 1);
  std::string error;
  try {
    make_backend(o);
  } catch (const Error& e) {
    error = e.what();
  }
  ::unsetenv("STREAMDIFF_CPU_ATTENTION");
  EXPECT_NE(onednn.find("attention onednn"), std::string::npos) << onednn;
  EXPECT_NE(error.find("STREAMDIFF_CPU_ATTENTION"), std::string::npos) << error;
  EXPECT_NE(error.find("sse9"), std::string::npos) << error;
}

}  // namespace
}  // namespace sd
