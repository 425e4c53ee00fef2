// Matrix-vector products with W stored [out, in] as F32, F16 or Q8_0 (single-stream decode, bound by the
// bytes of W read): F16 weights are converted to F32 in registers as they stream in, never written back;
// with AVX2 and AVX-512, Q8_0's are widened to int16 and multiplied with x rounded to int16 blocks
// (q8_0_quarters; the few rows after a range's quarters, and the portable build, take x as it is).
// Compiled once per instruction set (kernel_isa.h).
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "model/half.h"
#include "model/isa_kernels.h"
#include "model/isa_vectors.h"
#include "model/weight_types.h"
#include "util/aligned_vector.h"
#include "util/error.h"

CORTEX_ISA_BEGIN

namespace {

// The rows of a share of W split in quarters: rows o0 + j·q + i for the four quarters j and i in
// [i0, i1), one row from each quarter at a time, so that each load of x serves four weight streams far
// apart (which the hardware prefetchers follow: a quarter's rows are contiguous).
//
// No software prefetching (since 2026-12-05). Each stream was prefetched into L1 a fixed distance ahead
// across its rows (F32 1 KiB, F16 and Q8_0 2 KiB), chosen on these Zen 5 cores at moments when the
// machine read 70–100 GB/s. At moments of 35–60 GB/s, whole decode steps alternating in one process
// with and without it: F16 14–16 % less time without at ~60 GB/s and 4–5 % at ~35 GB/s, Q8_0 5 % at
// ~39 GB/s, F32's LM head and in-major layers together 2–3 % at ~58 GB/s; prefetching 512 bytes or 1 KiB
// ahead into L1 did as well as none at ~36 GB/s, 4 or 8 KiB into L2 4 % worse. The bandwidth probe now
// reads both ways in turn (bench/machine_limits.h): the limit stays the faster way's.
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

// F32 and F16 rows (T), widened in registers.
template <class T>
void widening_quarters(float* y, const float* x, const T* w, int K, Quarters r) {
  const size_t ks = static_cast<size_t>(K);
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  const int kv = K - K % BestVec::kWidth;  // values taken in vectors; the rest one by one
  const size_t qs = static_cast<size_t>(r.q) * ks;
  for (int i = r.i0; i < r.i1; ++i) {
    const T* r0 = w + static_cast<size_t>(r.o0 + i) * ks;
    const T* r1 = r0 + qs;
    const T* r2 = r1 + qs;
    const T* r3 = r2 + qs;
    BestVec::T a0 = BestVec::zero(), a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < kv; k += BestVec::kWidth) {
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

#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
// x in blocks of 32 values, each an int16 times the block's scale: x[32b + e] ≈ d[b] · q[32b + e], with
// d[b] the block's largest magnitude / 32767. Each value is off by at most d[b] / 2, 2^-16 of the block's
// largest: 256 times finer than Q8_0's rounding of W's blocks (2^-8 of their largest). A block holding NaN
// or an infinity gets d = NaN, so that every row's sum comes out NaN (with x as it is, NaN or ±∞: not a
// number either way). A block whose values are all below kSmallest in magnitude is taken as zeros
// (32767 / m overflows below ~1e-34; kSmallest leaves a margin). Rounding is to nearest (cvtps_epi32 in
// the default MXCSR mode, which nothing here changes).
//
// A sequence's Q8_0 products thus differ in the last bits between a step it runs alone (one row: x
// rounded) and one it shares with others (x as it is), as they already did by summation order
// (gpt2_forward_test's batch-against-alone check holds the logits within 1e-4 on its tiny model).
//
// linear_forward rounds x once per thread and product and hands the blocks to every piece the thread
// takes (round_to_int16_blocks below): rounded per piece, as before, a Q8_0 decode step took 1.7–2.4 %
// more time (alternating steps at 60–90 GB/s, ~2 ms a step), its 2–3 pieces per thread and product each
// rounding 768 or 3072 values.
void round_blocks(Int16Blocks& blocks, const float* x, int nb) {
  constexpr float kSmallest = 1e-30f;
  blocks.q.resize(static_cast<size_t>(nb) * kQ8Block);
  blocks.d.resize(static_cast<size_t>(nb));
  for (int b = 0; b < nb; ++b) {
    const float* xb = x + b * kQ8Block;
    int16_t* qb = blocks.q.data() + b * kQ8Block;
#ifdef CORTEX_AVX512
    const __m512 a0 = _mm512_loadu_ps(xb), a1 = _mm512_loadu_ps(xb + 16);
    constexpr int kNonFinite = 0x01 | 0x08 | 0x10 | 0x80;  // quiet NaN, +∞, -∞, signalling NaN
    const bool finite =
        (_mm512_fpclass_ps_mask(a0, kNonFinite) | _mm512_fpclass_ps_mask(a1, kNonFinite)) == 0;
    const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a0), _mm512_abs_ps(a1)));
    const __m512 inv = _mm512_set1_ps(finite && m >= kSmallest ? 32767.f / m : 0.f);
    _mm256_store_si256(reinterpret_cast<__m256i*>(qb),
                       _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(a0, inv))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(qb + 16),
                       _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(a1, inv))));
#else
    __m256 a[4], mag = _mm256_setzero_ps(), inf_or_nan = _mm256_setzero_ps();
    const __m256 sign = _mm256_set1_ps(-0.f);
    for (int v = 0; v < 4; ++v) {
      a[v] = _mm256_loadu_ps(xb + 8 * v);
      mag = _mm256_max_ps(mag, _mm256_andnot_ps(sign, a[v]));
      const __m256 z = _mm256_sub_ps(a[v], a[v]);  // 0, or NaN for NaN and ±∞
      inf_or_nan = _mm256_or_ps(inf_or_nan, _mm256_cmp_ps(z, z, _CMP_UNORD_Q));
    }
    const bool finite = _mm256_movemask_ps(inf_or_nan) == 0;
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mag), _mm256_extractf128_ps(mag, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    const __m256 inv = _mm256_set1_ps(finite && m >= kSmallest ? 32767.f / m : 0.f);
    __m256i i32[4];
    for (int v = 0; v < 4; ++v) i32[v] = _mm256_cvtps_epi32(_mm256_mul_ps(a[v], inv));
    // packs works within 128-bit lanes: 0–3 of the first, 0–3 of the second, 4–7 of each; reordered.
    for (int h = 0; h < 2; ++h)
      _mm256_store_si256(reinterpret_cast<__m256i*>(qb + 16 * h),
                         _mm256_permute4x64_epi64(_mm256_packs_epi32(i32[2 * h], i32[2 * h + 1]), 0xD8));
#endif
    const float d = m >= kSmallest ? m / 32767.f : 0.f;
    blocks.d[static_cast<size_t>(b)] = finite ? d : std::numeric_limits<float>::quiet_NaN();
  }
}

// xi, or x's nb blocks rounded now when it is null (a buffer per thread, reused by the thread's next call).
const Int16Blocks& int16_blocks(const Int16Blocks* xi, const float* x, int nb) {
  if (xi != nullptr) {
    if (xi->d.size() != static_cast<size_t>(nb))
      throw invalid_argument("Q8_0 product: x's int16 blocks were rounded from another length");
    return *xi;
  }
  thread_local Int16Blocks blocks;
  round_blocks(blocks, x, nb);
  return blocks;
}
#endif

// Q8_0 rows: x is taken as int16 blocks (round_blocks); per block, each row's int8 values widen to int16
// and multiply x's in pairs summed to int32 (pmaddwd), and their sum, scaled by the row's d and x's, goes
// into one accumulator per row. Until 2026-12-05 each stream was prefetched into L1 2 KiB ahead (see
// above for why no longer). Measured on two Zen 5 cores with a decode step's products
// (cortex_linear_bench decode_step/q8_0/rows:1/threads:2), the variants alternating step by step in one
// process, at moments of 70–100 GB/s:
// - It was three rows ahead: 2.4 KiB for rows of 768 values, but 9.6 KiB for the MLP's down projection
//   (3072 values), 38 KiB in flight for four streams in a 48 KiB L1. 2 KiB ahead took 1–12 % less time
//   in eleven runs (mean ~4 %), AVX2's kernel 3–8 % less in four; 1.5–3 KiB did about as well, 1 KiB no
//   better than three rows, 512 bytes worse.
// - Once per two blocks (68 bytes) left one line in 17 to the hardware prefetchers: 1–9 % more time in
//   six runs (AVX2's kernel ~1 %).
// - Into L1 rather than L2: ~7 % less time (on the Intel cores this was first measured on, no difference).
// The int16 products replaced widening W's int8 values to floats: per 32 values and row, AVX-512's kernel
// widened to int32 and converted twice (AVX2's four times) and multiplied three times; it now widens to
// int16 once (AVX2 twice), multiplies in pairs once (AVX2 twice, and adds), then converts, scales and
// accumulates once. Measured the same way:
// - With W in L2 (cortex_linear_bench's cached matrix, one thread), where the arithmetic is what counts,
//   the float kernel took 1.22–1.25× this one's time with AVX-512, 1.36–1.41× with AVX2. One scale for
//   the whole of x rather than per block saved ~3 % more; not taken, as one outlier in x would coarsen
//   every block's values.
// - A decode step's products from memory on two threads (124M's 131 MB of Q8_0): at 53–58 GB/s the float
//   kernel took 1.05–1.08× this one's time (AVX2's 1.23× at 50 GB/s); at 31–40 GB/s, where memory alone
//   sets the pace, 0.97–1.00×.
void q8_0_quarters(float* y, const float* x, const Int16Blocks* x_blocks, const BlockQ8_0* w, int K,
                   Quarters r) {
  const int nb = K / kQ8Block;
  const size_t bs = static_cast<size_t>(nb);
  const float* scale = fp16_table();
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  const size_t qs = static_cast<size_t>(r.q) * bs;  // blocks in each quarter
  const Int16Blocks& xi = int16_blocks(x_blocks, x, nb);
#endif
#ifdef CORTEX_AVX512
  for (int i = r.i0; i < r.i1; ++i) {
    const BlockQ8_0* r0 = w + static_cast<size_t>(r.o0 + i) * bs;
    const BlockQ8_0* rows[4] = {r0, r0 + qs, r0 + 2 * qs, r0 + 3 * qs};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int b = 0; b < nb; ++b) {
      const __m512i xv = _mm512_load_si512(xi.q.data() + b * kQ8Block);
      const __m512 dx = _mm512_set1_ps(xi.d[static_cast<size_t>(b)]);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const BlockQ8_0& blk = rows[j][b];
        const __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.q)));
        const __m512 dot = _mm512_cvtepi32_ps(_mm512_madd_epi16(xv, wv));
        acc[j] = _mm512_fmadd_ps(_mm512_mul_ps(dot, _mm512_set1_ps(scale[blk.d])), dx, acc[j]);
      }
    }
    for (int j = 0; j < 4; ++j) y[r.o0 + j * r.q + i] += Vec16::hsum(acc[j]);
  }
#elif defined(CORTEX_AVX2)
  for (int i = r.i0; i < r.i1; ++i) {
    const BlockQ8_0* r0 = w + static_cast<size_t>(r.o0 + i) * bs;
    const BlockQ8_0* rows[4] = {r0, r0 + qs, r0 + 2 * qs, r0 + 3 * qs};
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; ++b) {
      const int16_t* xb = xi.q.data() + b * kQ8Block;
      const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(xb)),
                    x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(xb + 16));
      const __m256 dx = _mm256_set1_ps(xi.d[static_cast<size_t>(b)]);
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const BlockQ8_0& blk = rows[j][b];
        const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.q))),
                      w1 =
                          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.q + 16)));
        const __m256 dot =
            _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(x0, w0), _mm256_madd_epi16(x1, w1)));
        acc[j] = _mm256_fmadd_ps(_mm256_mul_ps(dot, _mm256_set1_ps(scale[blk.d])), dx, acc[j]);
      }
    }
    for (int j = 0; j < 4; ++j) y[r.o0 + j * r.q + i] += Vec8::hsum(acc[j]);
  }
#else
  (void)x_blocks;  // the portable rows read x as it is
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

// The rows in r of W stored as t (checked by the caller); x_blocks as matvec_typed_quarters takes it.
void quarters_of(float* y, const float* x, const Int16Blocks* x_blocks, const void* w, DType t, int K,
                 Quarters r) {
  switch (t) {
    case DType::kF32:
      return widening_quarters(y, x, static_cast<const float*>(w), K, r);
    case DType::kF16:
      return widening_quarters(y, x, static_cast<const uint16_t*>(w), K, r);
    default:
      return q8_0_quarters(y, x, x_blocks, static_cast<const BlockQ8_0*>(w), K, r);
  }
}

}  // namespace

void matvec_typed(float* y, const float* x, const void* w, DType t, int K, int o0, int o1) {
  // Whole quarters of the range, then its last (o1 - o0) % 4 rows one at a time.
  check_type(t, K);
  const int q = (o1 - o0) / 4;
  if (q > 0) quarters_of(y, x, nullptr, w, t, K, {o0, q, 0, q});
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

void matvec_typed_quarters(float* y, const float* x, const Int16Blocks* xi, const void* w, DType t, int K,
                           int o0, int q, int i0, int i1) {
  check_type(t, K);
  quarters_of(y, x, xi, w, t, K, {o0, q, i0, i1});
}

void round_to_int16_blocks(Int16Blocks* out, const float* x, int K) {
  if (K % kQ8Block != 0) throw invalid_argument("int16 blocks take whole blocks of 32 values");
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  round_blocks(*out, x, K / kQ8Block);
#else
  (void)x;
  out->q.clear();
  out->d.clear();
#endif
}

CORTEX_ISA_END
