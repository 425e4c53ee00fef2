// Products with Q8_0 weights in groups of 16 rows (q8_0_groups.h), for one row of x or several (a decode
// step, batched steps, prompts), and the groups' rows widened to F32 (prompts through sgemm, where
// KernelTable::q8_0_group_prompt_rows sends them). Compiled once per instruction set (kernel_isa.h), and
// for AVX-512 with VNNI once more (the avx512vnni set).
//
// With AVX2 and AVX-512, x is taken rounded to int16 blocks (round_to_int16_blocks, matvec_typed.cpp).
// Per block of a group, each pair of values of the 16 rows widens to int16 and multiplies x's pair in
// one pmaddwd, summed in int32 over the block (exact: at most 32 · 128 · 32767 in magnitude); then the
// 16 sums convert to floats, scale by the rows' d and x's, and accumulate, once per block for all 16
// rows. The portable set reads x as it is, value by value.
#include <algorithm>
#include <cstddef>
#include <cstring>

#include "model/half.h"
#include "model/isa_kernels.h"
#include "model/q8_0_groups.h"
#include "model/weight_types.h"
#include "util/aligned_vector.h"
#include "util/error.h"

#if CORTEX_KERNEL_ISA == 3
// The VNNI build has only this file's kernels: x is rounded by AVX-512's.
namespace cortex::model::isa_avx512 {
void round_to_int16_blocks(Int16Blocks* out, const float* x, int K);
}
#endif

CORTEX_ISA_BEGIN

namespace {

// Throws unless xi holds K's blocks (rounded from an x of this length).
[[maybe_unused]] void check_blocks(const Int16Blocks& xi, int nb) {
  if (xi.d.size() != static_cast<size_t>(nb))
    throw invalid_argument("Q8_0 product: x's int16 blocks were rounded from another length");
}

const Q8GroupBlock* group_at(const void* w, int nb, int g) {
  return static_cast<const Q8GroupBlock*>(w) + static_cast<size_t>(g) * static_cast<size_t>(nb);
}

#ifdef CORTEX_AVX512
// acc + the sums of w's and x's int16 values in pairs, per 32-bit lane: with VNNI one instruction
// (vpdpwssd), else pmaddwd and an add. In a decode step of 124M's Q8_0 products, VNNI took 3 % less
// time, in batches of 8 sequences 10 % and in prompts of 128 tokens 17 % (alternating runs).
inline __m512i dot_pairs(__m512i acc, __m512i w, __m512i x) {
#ifdef CORTEX_AVX512_VNNI
  return _mm512_dpwssd_epi32(acc, w, x);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(w, x));
#endif
}
#endif

#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
// Adds the dot products of the S groups g[0..S) of 16 rows each with x (rounded: xq, xd) to y[16·g ..],
// the rows below N only. The groups are read in lockstep, block by block, x's pairs loaded once for all of
// them; each group's arithmetic is the same whatever S, so its results are too. No software prefetching:
// left to the hardware's prefetchers, one Zen 5 core read the LM head's groups from memory at 42–44 GB/s,
// against 20–25 GB/s with each stream prefetched 1–4 KiB ahead into L1 and 28–29 GB/s 2–4 KiB ahead into
// L2 (and 30–32 GB/s for the row kernel on the same rows as llama.cpp lays them out).
template <int S>
void group_dots(float* y, int N, const void* w, int nb, const int* g, const int16_t* xq, const float* xd) {
  const Q8GroupBlock* grp[S];
  for (int s = 0; s < S; ++s) grp[s] = group_at(w, nb, g[s]);
#ifdef CORTEX_AVX512
  __m512 acc[S];
  for (int s = 0; s < S; ++s) acc[s] = _mm512_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    const int16_t* xb = xq + b * kQ8Block;
    __m512i sum[S][2];
    for (int s = 0; s < S; ++s) sum[s][0] = sum[s][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int p = 0; p < kQ8Block / 2; p += 2) {
      int32_t x0, x1;  // x's pairs p and p + 1
      std::memcpy(&x0, xb + 2 * p, 4);
      std::memcpy(&x1, xb + 2 * p + 2, 4);
      const __m512i x0v = _mm512_set1_epi32(x0), x1v = _mm512_set1_epi32(x1);
      for (int s = 0; s < S; ++s) {
        const auto* q = reinterpret_cast<const __m256i*>(grp[s][b].q[p]);
        sum[s][0] = dot_pairs(sum[s][0], _mm512_cvtepi8_epi16(_mm256_load_si256(q)), x0v);
        sum[s][1] = dot_pairs(sum[s][1], _mm512_cvtepi8_epi16(_mm256_load_si256(q + 1)), x1v);
      }
    }
    const __m512 dx = _mm512_set1_ps(xd[b]);
    for (int s = 0; s < S; ++s) {
      const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(grp[s][b].d)));
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(sum[s][0], sum[s][1]));
      acc[s] = _mm512_fmadd_ps(_mm512_mul_ps(dot, d), dx, acc[s]);
    }
  }
  for (int s = 0; s < S; ++s) {
    float* out = y + static_cast<size_t>(g[s]) * kQ8GroupRows;
    const int rows = std::min(kQ8GroupRows, N - g[s] * kQ8GroupRows);
    const __mmask16 m = static_cast<__mmask16>((1u << rows) - 1);
    _mm512_mask_storeu_ps(out, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), acc[s]));
  }
#else
  // AVX2: a pair's 32 bytes as two halves of 8 rows each.
  __m256 acc[S][2];
  for (int s = 0; s < S; ++s) acc[s][0] = acc[s][1] = _mm256_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    const int16_t* xb = xq + b * kQ8Block;
    __m256i sum[S][2];
    for (int s = 0; s < S; ++s) sum[s][0] = sum[s][1] = _mm256_setzero_si256();
#pragma GCC unroll 16
    for (int p = 0; p < kQ8Block / 2; ++p) {
      int32_t x0;
      std::memcpy(&x0, xb + 2 * p, 4);
      const __m256i xv = _mm256_set1_epi32(x0);
      for (int s = 0; s < S; ++s) {
        const auto* q = reinterpret_cast<const __m128i*>(grp[s][b].q[p]);
        sum[s][0] =
            _mm256_add_epi32(sum[s][0], _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_load_si128(q)), xv));
        sum[s][1] =
            _mm256_add_epi32(sum[s][1], _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_load_si128(q + 1)), xv));
      }
    }
    const __m256 dx = _mm256_set1_ps(xd[b]);
    for (int s = 0; s < S; ++s)
      for (int h = 0; h < 2; ++h) {
        const __m256 d =
            _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(grp[s][b].d + 8 * h)));
        acc[s][h] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sum[s][h]), d), dx, acc[s][h]);
      }
  }
  for (int s = 0; s < S; ++s) {
    float* out = y + static_cast<size_t>(g[s]) * kQ8GroupRows;
    const int rows = std::min(kQ8GroupRows, N - g[s] * kQ8GroupRows);
    alignas(32) float v[kQ8GroupRows];
    _mm256_store_ps(v, acc[s][0]);
    _mm256_store_ps(v + 8, acc[s][1]);
    for (int r = 0; r < rows; ++r) out[r] += v[r];
  }
#endif
}

#ifdef CORTEX_AVX512
// Adds the dot products of group g (16 rows of W) with R input rows (rounded: xs[0..R)) to out's rows
// (row r at out + r·N), the columns below N only. Each pair of the group's values is widened once for
// all R rows; each row's arithmetic is group_dots<1>'s, so its results are too.
template <int R>
void group_rows(float* out, int N, const void* w, int nb, int g, const Int16Blocks* xs) {
  const Q8GroupBlock* grp = group_at(w, nb, g);
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int b = 0; b < nb; ++b) {
    __m512i sum[R][2];
    for (int r = 0; r < R; ++r) sum[r][0] = sum[r][1] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int p = 0; p < kQ8Block / 2; p += 2) {
      const auto* q = reinterpret_cast<const __m256i*>(grp[b].q[p]);
      const __m512i w0 = _mm512_cvtepi8_epi16(_mm256_load_si256(q));
      const __m512i w1 = _mm512_cvtepi8_epi16(_mm256_load_si256(q + 1));
      for (int r = 0; r < R; ++r) {
        const int16_t* xb = xs[r].q.data() + b * kQ8Block;
        int32_t x0, x1;  // row r's pairs p and p + 1
        std::memcpy(&x0, xb + 2 * p, 4);
        std::memcpy(&x1, xb + 2 * p + 2, 4);
        sum[r][0] = dot_pairs(sum[r][0], w0, _mm512_set1_epi32(x0));
        sum[r][1] = dot_pairs(sum[r][1], w1, _mm512_set1_epi32(x1));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(grp[b].d)));
    for (int r = 0; r < R; ++r) {
      const __m512 dot = _mm512_cvtepi32_ps(_mm512_add_epi32(sum[r][0], sum[r][1]));
      acc[r] =
          _mm512_fmadd_ps(_mm512_mul_ps(dot, d), _mm512_set1_ps(xs[r].d[static_cast<size_t>(b)]), acc[r]);
    }
  }
  const int rows = std::min(kQ8GroupRows, N - g * kQ8GroupRows);
  const __mmask16 m = static_cast<__mmask16>((1u << rows) - 1);
  for (int r = 0; r < R; ++r) {
    float* y = out + static_cast<size_t>(r) * static_cast<size_t>(N) + static_cast<size_t>(g) * kQ8GroupRows;
    _mm512_mask_storeu_ps(y, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y), acc[r]));
  }
}
#endif
#else
// Portable: x as it is; per row and block, the values' products summed in order, then scaled by d.
void group_dots_exact(float* y, int N, const void* w, int nb, int g, const float* x) {
  const Q8GroupBlock* grp = group_at(w, nb, g);
  const float* scale = fp16_table();
  const int rows = std::min(kQ8GroupRows, N - g * kQ8GroupRows);
  for (int r = 0; r < rows; ++r) {
    float s = 0.f;
    for (int b = 0; b < nb; ++b) {
      const float* xb = x + b * kQ8Block;
      float block = 0.f;
      for (int p = 0; p < kQ8Block / 2; ++p)
        block += xb[2 * p] * static_cast<float>(grp[b].q[p][r][0]) +
                 xb[2 * p + 1] * static_cast<float>(grp[b].q[p][r][1]);
      s += scale[grp[b].d[r]] * block;
    }
    y[static_cast<size_t>(g) * kQ8GroupRows + r] += s;
  }
}
#endif

}  // namespace

void q8_0_group_products(float* out, const float* in, const Int16Blocks* xs, const void* w, int rows, int K,
                         int N, int g0, int g1) {
  const int nb = K / kQ8Block;
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  for (int r = 0; r < rows; ++r) check_blocks(xs[r], nb);
#endif
  // Group by group, every input row in turn: a group's bytes (13 KiB for rows of 768 values) are read
  // from memory for the first rows and from the caches for the others. With AVX-512, eight rows at a
  // time (then four, two, one), each of the group's values widened once for all of them.
  for (int g = g0; g < g1; ++g) {
    int r = 0;
#ifdef CORTEX_AVX512
    auto rows_of = [&]<int R>() {
      for (; r + R <= rows; r += R)
        group_rows<R>(out + static_cast<size_t>(r) * static_cast<size_t>(N), N, w, nb, g, xs + r);
    };
    rows_of.template operator()<8>();
    rows_of.template operator()<4>();
    rows_of.template operator()<2>();
#endif
    for (; r < rows; ++r) {
      float* y = out + static_cast<size_t>(r) * static_cast<size_t>(N);
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
      (void)in;
      group_dots<1>(y, N, w, nb, &g, xs[r].q.data(), xs[r].d.data());
#else
      (void)xs;
      group_dots_exact(y, N, w, nb, g, in + static_cast<size_t>(r) * static_cast<size_t>(K));
#endif
    }
  }
}

void q8_0_group_pair_products(float* out, const float* in, const Int16Blocks* x, const void* w, int K, int N,
                              int ga, int gb, int count) {
  const int nb = K / kQ8Block;
#if defined(CORTEX_AVX512) || defined(CORTEX_AVX2)
  check_blocks(*x, nb);
  (void)in;
  for (int i = 0; i < count; ++i) {
    const int g[2] = {ga + i, gb + i};
    group_dots<2>(out, N, w, nb, g, x->q.data(), x->d.data());
  }
#else
  (void)x;
  for (int i = 0; i < count; ++i) {
    group_dots_exact(out, N, w, nb, ga + i, in);
    group_dots_exact(out, N, w, nb, gb + i, in);
  }
#endif
}

const float* dequantize_q8_0_groups(const void* w, int K, int n0, int n1) {
  thread_local AlignedVector<float> buffer;
  const size_t count = static_cast<size_t>(n1 - n0) * static_cast<size_t>(K);
  if (buffer.size() < count) buffer.resize(count);
  for (int n = n0; n < n1; ++n)
    q8_0_group_row_to_f32(buffer.data() + static_cast<size_t>(n - n0) * static_cast<size_t>(K), w, K, n);
  return buffer.data();
}

CORTEX_ISA_END
