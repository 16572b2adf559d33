// The fused attention kernels (see flash_attention.h for the algorithm), written once over a
// vector type. Included by one translation unit per instruction set, inside an anonymous
// namespace, after that unit has defined `struct Vec`:
//   using R             the register type (W f32 lanes)
//   W, MR, NVQ, NVP     lanes; query rows per tile; key vectors per S tile (KT = NVQ·W);
//                       output vectors per P·V tile (the last tile of a row may be narrower)
//   zero, load, store, bcast (a float to all lanes), fma(a, b, c) = a·b + c, mul, add, sub,
//   max, hmax, hsum (across lanes), round (to nearest), pow2 (2^n for whole n in [-127, 127])
// Only <cstdint>, <cstring> and the ISA's intrinsics may be used here (no shared inline code).

// ---- element access --------------------------------------------------------------------------

inline float bits_float(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

inline float load_elem(const void* p, int64_t i, bool bf16) {
  if (bf16) return bits_float(uint32_t(static_cast<const uint16_t*>(p)[i]) << 16);
  return static_cast<const float*>(p)[i];
}

// Round to nearest even (NaN stays NaN), as sd::to_bf16.
inline void store_elem(void* p, int64_t i, float f, bool bf16) {
  if (!bf16) {
    static_cast<float*>(p)[i] = f;
    return;
  }
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  const uint32_t r =
      (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) : u + 0x7fffu + ((u >> 16) & 1u);
  static_cast<uint16_t*>(p)[i] = uint16_t(r >> 16);
}

inline int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
inline int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

constexpr int64_t KT = int64_t(Vec::NVQ) * Vec::W;
constexpr float kNegInf = -__builtin_inff();

// 2^x, 0 for x <= -127, relative error < 2e-7: x = n + f with n = round(x), |f| <= 1/2;
// Cephes exp2f's polynomial for 2^f, 2^n through the exponent bits.
inline typename Vec::R exp2(typename Vec::R x) {
  x = Vec::max(x, Vec::bcast(-127.f));
  const typename Vec::R n = Vec::round(x);
  const typename Vec::R f = Vec::sub(x, n);
  typename Vec::R p = Vec::bcast(1.535336188319500e-4f);
  constexpr float kPoly[] = {1.339887440266574e-3f, 9.618437357674640e-3f, 5.550332471162809e-2f,
                             2.402264791363012e-1f, 6.931472028550421e-1f, 1.f};
  for (float c : kPoly) p = Vec::fma(p, f, Vec::bcast(c));
  return Vec::mul(p, Vec::pow2(n));
}

// ---- packing ---------------------------------------------------------------------------------

void pack_kv(const FlashCall& c, int64_t b, int64_t h, int64_t t0, int64_t t1, float* kp,
             float* vp) {
  const int64_t D = c.head_dim, Dp = c.dp;
  for (int64_t t = t0; t < t1; ++t) {
    float* kt = kp + t * D * KT;  // [D][KT]
    for (int64_t j = 0; j < KT; ++j) {
      const int64_t key = t * KT + j;
      float* vrow = vp + key * Dp;
      if (key >= c.lk) {
        for (int64_t d = 0; d < D; ++d) kt[d * KT + j] = 0.f;
        for (int64_t d = 0; d < Dp; ++d) vrow[d] = 0.f;
        continue;
      }
      const int64_t krow = (b * c.lk + key) * c.k_stride + h * D;
      const int64_t vsrc = (b * c.lk + key) * c.v_stride + h * D;
      for (int64_t d = 0; d < D; ++d) kt[d * KT + j] = load_elem(c.k, krow + d, c.bf16);
      for (int64_t d = 0; d < D; ++d) vrow[d] = load_elem(c.v, vsrc + d, c.bf16);
      for (int64_t d = D; d < Dp; ++d) vrow[d] = 0.f;
    }
  }
}

// ---- micro-kernels ---------------------------------------------------------------------------

// s[i][t·KT + x] = Σ_d q[i][d] · kᵀ_t[d][x] for the MR rows of q (row stride D) and key tiles
// [0, tiles) starting at kt; s has row stride lds.
inline void qk_strip(const float* q, int64_t D, const float* kt, int64_t tiles, float* s,
                     int64_t lds) {
  for (int64_t t = 0; t < tiles; ++t) {
    const float* kk = kt + t * D * KT;
    typename Vec::R acc[Vec::MR][Vec::NVQ];
#pragma GCC unroll 16
    for (int i = 0; i < Vec::MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < Vec::NVQ; ++v) acc[i][v] = Vec::zero();
    for (int64_t d = 0; d < D; ++d) {
      typename Vec::R kv[Vec::NVQ];
#pragma GCC unroll 4
      for (int v = 0; v < Vec::NVQ; ++v) kv[v] = Vec::load(kk + d * KT + v * Vec::W);
#pragma GCC unroll 16
      for (int i = 0; i < Vec::MR; ++i) {
        const typename Vec::R qb = Vec::bcast(q[i * D + d]);
#pragma GCC unroll 4
        for (int v = 0; v < Vec::NVQ; ++v) acc[i][v] = Vec::fma(qb, kv[v], acc[i][v]);
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < Vec::MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < Vec::NVQ; ++v) Vec::store(s + i * lds + t * KT + v * Vec::W, acc[i][v]);
  }
}

// o[i][col .. col + NV·W) = alpha[i] · o[i][...] + Σ_{j < keys} p[i][j] · v[j][...] for the MR
// rows; p has row stride ldp, v and o row stride Dp.
template <int NV>
inline void pv_tile(const float* p, int64_t ldp, const float* v, int64_t Dp, int64_t keys, float* o,
                    const float* alpha, int64_t col) {
  typename Vec::R acc[Vec::MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < Vec::MR; ++i) {
    const typename Vec::R a = Vec::bcast(alpha[i]);
#pragma GCC unroll 4
    for (int x = 0; x < NV; ++x) acc[i][x] = Vec::mul(a, Vec::load(o + i * Dp + col + x * Vec::W));
  }
  for (int64_t j = 0; j < keys; ++j) {
    typename Vec::R vv[NV];
#pragma GCC unroll 4
    for (int x = 0; x < NV; ++x) vv[x] = Vec::load(v + j * Dp + col + x * Vec::W);
#pragma GCC unroll 16
    for (int i = 0; i < Vec::MR; ++i) {
      const typename Vec::R pb = Vec::bcast(p[i * ldp + j]);
#pragma GCC unroll 4
      for (int x = 0; x < NV; ++x) acc[i][x] = Vec::fma(pb, vv[x], acc[i][x]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < Vec::MR; ++i)
#pragma GCC unroll 4
    for (int x = 0; x < NV; ++x) Vec::store(o + i * Dp + col + x * Vec::W, acc[i][x]);
}

template <int NV>
inline void pv_rest(const float* p, int64_t ldp, const float* v, int64_t Dp, int64_t keys, float* o,
                    const float* alpha, int64_t col, int64_t vectors) {
  if constexpr (NV > 0) {
    if (vectors == NV) {
      pv_tile<NV>(p, ldp, v, Dp, keys, o, alpha, col);
    } else {
      pv_rest<NV - 1>(p, ldp, v, Dp, keys, o, alpha, col, vectors);
    }
  }
}

inline void pv_strip(const float* p, int64_t ldp, const float* v, int64_t Dp, int64_t keys,
                     float* o, const float* alpha) {
  int64_t col = 0;
  for (; col + Vec::NVP * Vec::W <= Dp; col += Vec::NVP * Vec::W)
    pv_tile<Vec::NVP>(p, ldp, v, Dp, keys, o, alpha, col);
  if (col < Dp) pv_rest<Vec::NVP - 1>(p, ldp, v, Dp, keys, o, alpha, col, (Dp - col) / Vec::W);
}

// One row of the online softmax over s[0, width) (width a multiple of W), of which the first
// `valid` columns are real keys: updates the row's max *m and sum *l, turns s into
// probabilities (0 past `valid`) and returns the factor α for the row's earlier output.
inline float softmax_row(float* s, int64_t valid, int64_t width, float c, float* m, float* l) {
  if (valid == 0) {
    for (int64_t j = 0; j < width; j += Vec::W) Vec::store(s + j, Vec::zero());
    return 1.f;
  }
  for (int64_t j = valid; j < width; ++j) s[j] = kNegInf;
  typename Vec::R mx = Vec::load(s);
  for (int64_t j = Vec::W; j < width; j += Vec::W) mx = Vec::max(mx, Vec::load(s + j));
  const float m_old = *m;
  const float m_new = m_old > Vec::hmax(mx) ? m_old : Vec::hmax(mx);
  const float alpha = m_old == kNegInf ? 0.f : __builtin_exp2f((m_old - m_new) * c);
  const typename Vec::R cv = Vec::bcast(c), off = Vec::bcast(-m_new * c);
  typename Vec::R sum0 = Vec::zero(), sum1 = Vec::zero();
  int64_t j = 0;
  for (; j + 2 * Vec::W <= width; j += 2 * Vec::W) {
    const typename Vec::R p0 = exp2(Vec::fma(Vec::load(s + j), cv, off));
    const typename Vec::R p1 = exp2(Vec::fma(Vec::load(s + j + Vec::W), cv, off));
    Vec::store(s + j, p0);
    Vec::store(s + j + Vec::W, p1);
    sum0 = Vec::add(sum0, p0);
    sum1 = Vec::add(sum1, p1);
  }
  for (; j < width; j += Vec::W) {
    const typename Vec::R p0 = exp2(Vec::fma(Vec::load(s + j), cv, off));
    Vec::store(s + j, p0);
    sum0 = Vec::add(sum0, p0);
  }
  *l = *l * alpha + Vec::hsum(Vec::add(sum0, sum1));
  *m = m_new;
  return alpha;
}

// ---- one work item ---------------------------------------------------------------------------

inline int64_t up16(int64_t n) {
  return (n + 15) / 16 * 16;
}

// Workspace: Q [rows][D], O [rows][Dp], S [MR][NKB], m, l [rows], α [MR] for rows =
// kFlashQueryBlock, each part starting on a multiple of 16 floats (64 bytes).
int64_t thread_floats(int64_t D, int64_t Dp) {
  return up16(kFlashQueryBlock * D) + up16(kFlashQueryBlock * Dp) + up16(Vec::MR * kFlashKeyBlock) +
         2 * up16(kFlashQueryBlock) + up16(Vec::MR);
}

void run_rows(const FlashCall& c, int64_t b, int64_t h, int64_t q0, int64_t rows, const float* kp,
              const float* vp, float* ws) {
  constexpr int MR = Vec::MR;
  const int64_t D = c.head_dim, Dp = c.dp;
  const int64_t rows_p = (rows + MR - 1) / MR * MR;
  const int64_t NKB = kFlashKeyBlock;
  // The workspace as thread_floats() lays it out.
  float* qb = ws;
  float* ob = qb + up16(kFlashQueryBlock * D);
  float* sb = ob + up16(kFlashQueryBlock * Dp);
  float* mrow = sb + up16(MR * NKB);
  float* lrow = mrow + up16(kFlashQueryBlock);
  float* arow = lrow + up16(kFlashQueryBlock);

  for (int64_t r = 0; r < rows_p; ++r) {
    float* qr = qb + r * D;
    if (r < rows) {
      const int64_t src = (b * c.lq + q0 + r) * c.q_stride + h * D;
      for (int64_t d = 0; d < D; ++d) qr[d] = load_elem(c.q, src + d, c.bf16);
    } else {
      for (int64_t d = 0; d < D; ++d) qr[d] = 0.f;
    }
    for (int64_t d = 0; d < Dp; ++d) ob[r * Dp + d] = 0.f;
    mrow[r] = kNegInf;
    lrow[r] = 0.f;
  }

  // Causal: the item's last query sees keys up to q0 + rows − 1.
  const int64_t lk = c.causal ? imin(c.lk, q0 + rows) : c.lk;
  for (int64_t k0 = 0; k0 < lk; k0 += NKB) {
    const int64_t kn = imin(NKB, lk - k0);
    const float* kt = kp + (k0 / KT) * D * KT;
    const float* vb = vp + k0 * Dp;
    for (int64_t r0 = 0; r0 < rows_p; r0 += MR) {
      // Keys of this block seen by the tile's last row (all rows when not causal).
      const int64_t seen = c.causal ? imax(0, imin(kn, q0 + r0 + MR - k0)) : kn;
      if (seen == 0) continue;  // no row of the tile sees this block: α = 1, nothing to add
      const int64_t tiles = (seen + KT - 1) / KT;
      qk_strip(qb + r0 * D, D, kt, tiles, sb, NKB);
      for (int i = 0; i < MR; ++i) {
        const int64_t valid = c.causal ? imax(0, imin(kn, q0 + r0 + i + 1 - k0)) : kn;
        arow[i] = softmax_row(sb + i * NKB, valid, tiles * KT, c.c, mrow + r0 + i, lrow + r0 + i);
      }
      pv_strip(sb, NKB, vb, Dp, seen, ob + r0 * Dp, arow);
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    const float inv = 1.f / lrow[r];
    const int64_t dst = (b * c.lq + q0 + r) * c.out_stride + h * D;
    for (int64_t d = 0; d < D; ++d) store_elem(c.out, dst + d, ob[r * Dp + d] * inv, c.bf16);
  }
}

constexpr FlashKernels kTable{Vec::W, Vec::MR, int(KT), &thread_floats, &pack_kv, &run_rows};
