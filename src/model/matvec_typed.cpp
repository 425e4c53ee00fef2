// Matrix-vector products with W stored [out, in] as F32, F16 or Q8_0 (single-stream decode, bound by the
// bytes of W read): F16 and Q8_0 weights are converted to F32 in registers as they stream in, never
// written back. Compiled once per instruction set (kernel_isa.h).
#include <cstddef>
#include <string>

#include "model/half.h"
#include "model/isa_kernels.h"
#include "model/isa_vectors.h"
#include "model/weight_types.h"
#include "util/error.h"

CORTEX_ISA_BEGIN

namespace {

// Prefetches the cache line at p into L1 (and L2).
inline void prefetch_l1(const void* p) {
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
  (void)p;
#endif
}

// The rows of a share of W split in quarters: rows o0 + j·q + i for the four quarters j and i in
// [i0, i1), one row from each quarter at a time, so that each load of x serves four weight streams far
// apart (which the hardware prefetchers follow). Each stream is also prefetched a fixed distance ahead
// across its rows (below; F32 and F16 a line per 64 bytes read, Q8_0 once per 34-byte block): rows are
// short (3 KiB in F32, 1.5 KiB in F16, 816 bytes in Q8_0 for 768 values), too short for the hardware
// prefetchers to get far ahead within one.
struct Quarters {
  int o0, q, i0, i1;
};

// One row's dot product with x, value by value (rows whose K the vector loops do not take, and the last
// rows of a range that does not split in four).
float row_dot(const float* x, const float* row, int K) {
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += x[k] * row[k];
  return s;
}
float row_dot(const float* x, const uint16_t* row, int K) {
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += x[k] * fp16_to_fp32(row[k]);
  return s;
}
float q8_0_row(const float* x, const BlockQ8_0* row, int K, const float* scale) {
  float s = 0.f;
  for (int b = 0; b < K / kQ8Block; ++b) {
    float block = 0.f;
    for (int e = 0; e < kQ8Block; ++e) block += x[b * kQ8Block + e] * static_cast<float>(row[b].q[e]);
    s += scale[row[b].d] * block;
  }
  return s;
}

#if defined(CORTEX_AVX2)
inline BestVec::T load_w(const float* p) {
  return BestVec::load(p);
}
inline BestVec::T load_w(const uint16_t* p) {
  return BestVec::load_f16(p);
}
#endif

// F32 and F16 rows (T), widened in registers. Each stream is prefetched into L1 kAhead values ahead,
// across its rows (a quarter's rows are contiguous): 1 KiB of F32, 2 KiB of F16. On Zen 5 cores a decode
// step's products read 17–19 % (F32) and 13–17 % (F16) faster that way than three rows ahead (F32 into
// L2, F16 into L1), in runs alternating step by step (cortex_linear_bench); 512 bytes of F32 and 1 or 4
// KiB of F16 read slower than these.
template <class T>
void widening_quarters(float* y, const float* x, const T* w, int K, Quarters r) {
  const size_t ks = static_cast<size_t>(K);
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  constexpr size_t kAhead = sizeof(T) == 4 ? 256 : 1024;
  constexpr int kLineValues = 64 / static_cast<int>(sizeof(T));
  const int kv = K - K % BestVec::kWidth;  // values taken in vectors; the rest one by one
  const size_t qs = static_cast<size_t>(r.q) * ks;
  for (int i = r.i0; i < r.i1; ++i) {
    const T* r0 = w + static_cast<size_t>(r.o0 + i) * ks;
    const T* r1 = r0 + qs;
    const T* r2 = r1 + qs;
    const T* r3 = r2 + qs;
    BestVec::T a0 = BestVec::zero(), a1 = a0, a2 = a0, a3 = a0;
    const bool pf = (static_cast<size_t>(i) + 1) * ks + kAhead <= qs;  // whether they stay in the quarters
    for (int k = 0; k < kv; k += BestVec::kWidth) {
      if (pf && k % kLineValues == 0)
        for (const T* row : {r0, r1, r2, r3}) prefetch_l1(row + kAhead + k);
      const BestVec::T xv = BestVec::load(x + k);
      a0 = BestVec::fmadd(xv, load_w(r0 + k), a0);
      a1 = BestVec::fmadd(xv, load_w(r1 + k), a1);
      a2 = BestVec::fmadd(xv, load_w(r2 + k), a2);
      a3 = BestVec::fmadd(xv, load_w(r3 + k), a3);
    }
    float* yi = y + r.o0 + i;
    const float* xt = x + kv;
    const int tail = K - kv;
    yi[0] += BestVec::hsum(a0) + row_dot(xt, r0 + kv, tail);
    yi[r.q] += BestVec::hsum(a1) + row_dot(xt, r1 + kv, tail);
    yi[2 * r.q] += BestVec::hsum(a2) + row_dot(xt, r2 + kv, tail);
    yi[3 * r.q] += BestVec::hsum(a3) + row_dot(xt, r3 + kv, tail);
  }
#else
  for (int j = 0; j < 4; ++j)
    for (int i = r.i0; i < r.i1; ++i) {
      const int o = r.o0 + j * r.q + i;
      y[o] += row_dot(x, w + static_cast<size_t>(o) * ks, K);
    }
#endif
}

// Q8_0 rows: per block, the int8 values widen to floats in registers, their dot product with x is scaled
// by the block's d into one accumulator per row. Each stream is prefetched into L1 2 KiB ahead across its
// rows, as F16's are, once per block (34 bytes). Measured on two Zen 5 cores with a decode step's
// products (cortex_linear_bench decode_step/q8_0/rows:1/threads:2), the variants alternating step by
// step in one process:
// - It was three rows ahead: 2.4 KiB for rows of 768 values, but 9.6 KiB for the MLP's down projection
//   (3072 values), 38 KiB in flight for four streams in a 48 KiB L1. 2 KiB ahead took 1–12 % less time
//   in eleven runs (mean ~4 %), AVX2's kernel 3–8 % less in four; 1.5–3 KiB did about as well, 1 KiB no
//   better than three rows, 512 bytes worse.
// - Once per two blocks (68 bytes) left one line in 17 to the hardware prefetchers: 1–9 % more time in
//   six runs (AVX2's kernel ~1 %).
// - Into L1 rather than L2: ~7 % less time (on the Intel cores this was first measured on, no difference).
void q8_0_quarters(float* y, const float* x, const BlockQ8_0* w, int K, Quarters r) {
  const int nb = K / kQ8Block;
  const size_t bs = static_cast<size_t>(nb);
  const float* scale = fp16_table();
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  constexpr size_t kAhead = 2048;                                         // bytes
  const size_t qs = static_cast<size_t>(r.q) * bs;                        // blocks in each quarter
  const size_t rb = bs * sizeof(BlockQ8_0), qb = qs * sizeof(BlockQ8_0);  // bytes in a row, in a quarter
#endif
#ifdef CORTEX_AVX512
  for (int i = r.i0; i < r.i1; ++i) {
    const BlockQ8_0* r0 = w + static_cast<size_t>(r.o0 + i) * bs;
    const BlockQ8_0* rows[4] = {r0, r0 + qs, r0 + 2 * qs, r0 + 3 * qs};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const bool pf = (static_cast<size_t>(i) + 1) * rb + kAhead <= qb;  // whether they stay in the quarters
    for (int b = 0; b < nb; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * kQ8Block), x1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const BlockQ8_0& blk = rows[j][b];
        if (pf) prefetch_l1(reinterpret_cast<const std::byte*>(&blk) + kAhead);
        const __m512 s =
            _mm512_fmadd_ps(x1, Vec16::load_q8(blk.q + 16), _mm512_mul_ps(x0, Vec16::load_q8(blk.q)));
        acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(scale[blk.d]), s, acc[j]);
      }
    }
    for (int j = 0; j < 4; ++j) y[r.o0 + j * r.q + i] += Vec16::hsum(acc[j]);
  }
#elif defined(CORTEX_AVX2)
  for (int i = r.i0; i < r.i1; ++i) {
    const BlockQ8_0* r0 = w + static_cast<size_t>(r.o0 + i) * bs;
    const BlockQ8_0* rows[4] = {r0, r0 + qs, r0 + 2 * qs, r0 + 3 * qs};
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const bool pf = (static_cast<size_t>(i) + 1) * rb + kAhead <= qb;
    for (int b = 0; b < nb; ++b) {
      const float* xb = x + b * kQ8Block;
      const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                   x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const BlockQ8_0& blk = rows[j][b];
        if (pf) prefetch_l1(reinterpret_cast<const std::byte*>(&blk) + kAhead);
        __m256 s = _mm256_mul_ps(x0, Vec8::load_q8(blk.q));
        s = _mm256_fmadd_ps(x1, Vec8::load_q8(blk.q + 8), s);
        s = _mm256_fmadd_ps(x2, Vec8::load_q8(blk.q + 16), s);
        s = _mm256_fmadd_ps(x3, Vec8::load_q8(blk.q + 24), s);
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(scale[blk.d]), s, acc[j]);
      }
    }
    for (int j = 0; j < 4; ++j) y[r.o0 + j * r.q + i] += Vec8::hsum(acc[j]);
  }
#else
  for (int j = 0; j < 4; ++j)
    for (int i = r.i0; i < r.i1; ++i) {
      const int o = r.o0 + j * r.q + i;
      y[o] += q8_0_row(x, w + static_cast<size_t>(o) * bs, K, scale);
    }
#endif
}

void check_type(DType t, int K) {
  if (t == DType::kQ8_0 && K % kQ8Block != 0)
    throw invalid_argument("Q8_0 rows must hold whole blocks of 32 values");
  if (t != DType::kF32 && t != DType::kF16 && t != DType::kQ8_0)
    throw invalid_argument(std::string("matvec_typed: weights of type ") + dtype_name(t) +
                           " are not supported (F32, F16, Q8_0)");
}

// The rows in r of W stored as t (checked by the caller).
void quarters_of(float* y, const float* x, const void* w, DType t, int K, Quarters r) {
  switch (t) {
    case DType::kF32:
      return widening_quarters(y, x, static_cast<const float*>(w), K, r);
    case DType::kF16:
      return widening_quarters(y, x, static_cast<const uint16_t*>(w), K, r);
    default:
      return q8_0_quarters(y, x, static_cast<const BlockQ8_0*>(w), K, r);
  }
}

}  // namespace

void matvec_typed(float* y, const float* x, const void* w, DType t, int K, int o0, int o1) {
  // Whole quarters of the range, then its last (o1 - o0) % 4 rows one at a time.
  check_type(t, K);
  const int q = (o1 - o0) / 4;
  if (q > 0) quarters_of(y, x, w, t, K, {o0, q, 0, q});
  const size_t row_bytes = dtype_bytes(t, K);
  for (int o = o0 + 4 * q; o < o1; ++o) {
    const void* row = static_cast<const std::byte*>(w) + static_cast<size_t>(o) * row_bytes;
    switch (t) {
      case DType::kF32:
        y[o] += row_dot(x, static_cast<const float*>(row), K);
        break;
      case DType::kF16:
        y[o] += row_dot(x, static_cast<const uint16_t*>(row), K);
        break;
      default:
        y[o] += q8_0_row(x, static_cast<const BlockQ8_0*>(row), K, fp16_table());
    }
  }
}

void matvec_typed_quarters(float* y, const float* x, const void* w, DType t, int K, int o0, int q, int i0,
                           int i1) {
  check_type(t, K);
  quarters_of(y, x, w, t, K, {o0, q, i0, i1});
}

CORTEX_ISA_END
