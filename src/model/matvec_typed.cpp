// Matrix-vector products with F16 and Q8_0 weights (single-stream decode, bound by the bytes of W read):
// the weights are converted to F32 in registers as they stream in, never written back. Compiled once per
// instruction set (kernel_isa.h).
#include <cstddef>
#include <cstring>
#include <string>

#include "model/half.h"
#include "model/isa_kernels.h"
#include "model/weight_types.h"
#include "util/error.h"

CORTEX_ISA_BEGIN

namespace {

#ifdef CORTEX_AVX512
inline float hsum512(__m512 v) {
  __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v),
                           _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
inline __m512 load_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 load_q8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
#endif
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
inline float hsum256(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#endif
#if defined(CORTEX_AVX2) && !defined(CORTEX_AVX512)
inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load_q8(const int8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}
#endif

// Prefetches the cache line at p into L2, or into L1 (and L2).
inline void prefetch_l2(const void* p) {
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
#else
  (void)p;
#endif
}
inline void prefetch_l1(const void* p) {
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
#else
  (void)p;
#endif
}

// Four rows of F16 W at a time: each load of x serves four weight streams.
void matvec_f16(float* y, const float* x, const uint16_t* w, int K, int o0, int o1) {
  const size_t ks = static_cast<size_t>(K);
  int o = o0;
#ifdef CORTEX_AVX512
  if (K % 16 == 0 && o1 - o0 >= 4) {
    // Four rows at a time, one from each quarter of the range: four sequential streams far apart (which
    // the hardware prefetchers follow), each also prefetched three rows ahead: into L1, which read the
    // products of a decode step 5–10 % faster than into L2 in alternating runs (Q8_0: no difference).
    const int q = (o1 - o0) / 4;
    for (int i = 0; i < q; ++i) {
      const uint16_t* r0 = w + static_cast<size_t>(o0 + i) * ks;
      const uint16_t* r1 = r0 + q * ks;
      const uint16_t* r2 = r1 + q * ks;
      const uint16_t* r3 = r2 + q * ks;
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
             a3 = _mm512_setzero_ps();
      const bool pf = i + 3 < q;
      for (int k = 0; k < K; k += 16) {
        if (pf && k % 32 == 0) {  // each stream's row three ahead, a line per two steps
          prefetch_l1(r0 + 3 * ks + k), prefetch_l1(r1 + 3 * ks + k);
          prefetch_l1(r2 + 3 * ks + k), prefetch_l1(r3 + 3 * ks + k);
        }
        const __m512 xv = _mm512_loadu_ps(x + k);
        a0 = _mm512_fmadd_ps(xv, load_f16(r0 + k), a0);
        a1 = _mm512_fmadd_ps(xv, load_f16(r1 + k), a1);
        a2 = _mm512_fmadd_ps(xv, load_f16(r2 + k), a2);
        a3 = _mm512_fmadd_ps(xv, load_f16(r3 + k), a3);
      }
      y[o0 + i] += hsum512(a0), y[o0 + q + i] += hsum512(a1), y[o0 + 2 * q + i] += hsum512(a2),
          y[o0 + 3 * q + i] += hsum512(a3);
    }
    o = o0 + 4 * q;
  }
#elif defined(CORTEX_AVX2)
  if (K % 8 == 0 && o1 - o0 >= 4) {
    // As above, with 8-wide vectors.
    const int q = (o1 - o0) / 4;
    for (int i = 0; i < q; ++i) {
      const uint16_t* r0 = w + static_cast<size_t>(o0 + i) * ks;
      const uint16_t* r1 = r0 + q * ks;
      const uint16_t* r2 = r1 + q * ks;
      const uint16_t* r3 = r2 + q * ks;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
             a3 = _mm256_setzero_ps();
      const bool pf = i + 3 < q;
      for (int k = 0; k < K; k += 8) {
        if (pf && k % 32 == 0) {
          prefetch_l1(r0 + 3 * ks + k), prefetch_l1(r1 + 3 * ks + k);
          prefetch_l1(r2 + 3 * ks + k), prefetch_l1(r3 + 3 * ks + k);
        }
        const __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(xv, load_f16(r0 + k), a0);
        a1 = _mm256_fmadd_ps(xv, load_f16(r1 + k), a1);
        a2 = _mm256_fmadd_ps(xv, load_f16(r2 + k), a2);
        a3 = _mm256_fmadd_ps(xv, load_f16(r3 + k), a3);
      }
      y[o0 + i] += hsum256(a0), y[o0 + q + i] += hsum256(a1), y[o0 + 2 * q + i] += hsum256(a2),
          y[o0 + 3 * q + i] += hsum256(a3);
    }
    o = o0 + 4 * q;
  }
#endif
  for (; o < o1; ++o) {
    const uint16_t* wr = w + static_cast<size_t>(o) * ks;
    float s = 0.f;
    for (int k = 0; k < K; ++k) s += x[k] * fp16_to_fp32(wr[k]);
    y[o] += s;
  }
}

// Four rows of Q8_0 W at a time: per block, the int8 values widen to floats in registers, their dot
// product with x is scaled by the block's d into one accumulator per row.
void matvec_q8_0(float* y, const float* x, const BlockQ8_0* w, int K, int o0, int o1) {
  const int nb = K / kQ8Block;
  const size_t bs = static_cast<size_t>(nb);
  const float* scale = fp16_table();
  int o = o0;
#ifdef CORTEX_AVX512
  if (o1 - o0 >= 4) {
    // Four rows at a time, one from each quarter of the range (four sequential streams far apart), each
    // stream's row three rows ahead prefetched into L2 as it goes: a row is short (816 bytes for 768
    // values), too short for the hardware prefetchers to get far ahead within it.
    const int q = (o1 - o0) / 4;
    for (int i = 0; i < q; ++i) {
      const BlockQ8_0* r0 = w + static_cast<size_t>(o0 + i) * bs;
      const BlockQ8_0* rows[4] = {r0, r0 + q * bs, r0 + 2 * q * bs, r0 + 3 * q * bs};
      __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      const bool pf = i + 3 < q;
      for (int b = 0; b < nb; ++b) {
        const __m512 x0 = _mm512_loadu_ps(x + b * kQ8Block), x1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const BlockQ8_0& blk = rows[j][b];
          if (pf && b % 2 == 0) prefetch_l2(&blk + 3 * bs);  // a line per two blocks (68 bytes)
          const __m512 s = _mm512_fmadd_ps(x1, load_q8(blk.q + 16), _mm512_mul_ps(x0, load_q8(blk.q)));
          acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(scale[blk.d]), s, acc[j]);
        }
      }
      for (int j = 0; j < 4; ++j) y[o0 + j * q + i] += hsum512(acc[j]);
    }
    o = o0 + 4 * q;
  }
#elif defined(CORTEX_AVX2)
  if (o1 - o0 >= 4) {
    // As above, with 8-wide vectors.
    const int q = (o1 - o0) / 4;
    for (int i = 0; i < q; ++i) {
      const BlockQ8_0* r0 = w + static_cast<size_t>(o0 + i) * bs;
      const BlockQ8_0* rows[4] = {r0, r0 + q * bs, r0 + 2 * q * bs, r0 + 3 * q * bs};
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      const bool pf = i + 3 < q;
      for (int b = 0; b < nb; ++b) {
        const float* xb = x + b * kQ8Block;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                     x3 = _mm256_loadu_ps(xb + 24);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const BlockQ8_0& blk = rows[j][b];
          if (pf && b % 2 == 0) prefetch_l2(&blk + 3 * bs);
          __m256 s = _mm256_mul_ps(x0, load_q8(blk.q));
          s = _mm256_fmadd_ps(x1, load_q8(blk.q + 8), s);
          s = _mm256_fmadd_ps(x2, load_q8(blk.q + 16), s);
          s = _mm256_fmadd_ps(x3, load_q8(blk.q + 24), s);
          acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(scale[blk.d]), s, acc[j]);
        }
      }
      for (int j = 0; j < 4; ++j) y[o0 + j * q + i] += hsum256(acc[j]);
    }
    o = o0 + 4 * q;
  }
#endif
  for (; o < o1; ++o) {
    const BlockQ8_0* row = w + static_cast<size_t>(o) * bs;
    float s = 0.f;
    for (int b = 0; b < nb; ++b) {
      float block = 0.f;
      for (int j = 0; j < kQ8Block; ++j) block += x[b * kQ8Block + j] * static_cast<float>(row[b].q[j]);
      s += scale[row[b].d] * block;
    }
    y[o] += s;
  }
}

}  // namespace

void matvec_typed(float* y, const float* x, const void* w, DType t, int K, int o0, int o1) {
  switch (t) {
    case DType::kF16:
      matvec_f16(y, x, static_cast<const uint16_t*>(w), K, o0, o1);
      return;
    case DType::kQ8_0:
      if (K % kQ8Block != 0) throw invalid_argument("Q8_0 rows must hold whole blocks of 32 values");
      matvec_q8_0(y, x, static_cast<const BlockQ8_0*>(w), K, o0, o1);
      return;
    default:
      throw invalid_argument(std::string("matvec_typed: weights of type ") + dtype_name(t) +
                             " are not supported (F16, Q8_0)");
  }
}

CORTEX_ISA_END
