#include "model/small_batch_gemm.h"

#include <cstddef>

#include "model/kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CORTEX_AVX2 1
#endif
#if defined(__AVX512F__)
#define CORTEX_AVX512 1
#endif

namespace cortex::model {

namespace {

#ifdef CORTEX_AVX2
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

#ifdef CORTEX_AVX512
inline float hsum512(__m512 v) {  // once per tile: a plain store keeps clear of GCC 12's extract warnings
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0.f;
  for (float l : lanes) s += l;
  return s;
}
#endif

// out[MR rows, 16 columns at n] += in[MR rows, k0:k1] · W[k0:k1, n:n+16]: 2·MR accumulators in registers.
template <int MR>
void tile_in_major(float* out, const float* in, const float* w, int K, int N, int n, int k0, int k1) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  const float* wk = w + static_cast<size_t>(k0) * N + n;
  for (int k = k0; k < k1; ++k, wk += N) {
    const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m256 xb = _mm256_broadcast_ss(in + static_cast<size_t>(m) * K + k);
      acc[m][0] = _mm256_fmadd_ps(xb, w0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(xb, w1, acc[m][1]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    float* o = out + static_cast<size_t>(m) * N + n;
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[m][0]));
    _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), acc[m][1]));
  }
}

#ifdef CORTEX_AVX512
// The same tile, 32 columns wide in two 512-bit registers per row.
template <int MR>
void tile_in_major_512(float* out, const float* in, const float* w, int K, int N, int n, int k0, int k1) {
  __m512 acc[MR][2];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
  const float* wk = w + static_cast<size_t>(k0) * N + n;
  for (int k = k0; k < k1; ++k, wk += N) {
    const __m512 w0 = _mm512_loadu_ps(wk), w1 = _mm512_loadu_ps(wk + 16);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512 xb = _mm512_set1_ps(in[static_cast<size_t>(m) * K + k]);
      acc[m][0] = _mm512_fmadd_ps(xb, w0, acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(xb, w1, acc[m][1]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    float* o = out + static_cast<size_t>(m) * N + n;
    _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), acc[m][0]));
    _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_loadu_ps(o + 16), acc[m][1]));
  }
}

// out[MR rows, NR columns at n] += dot(in[m, :], W[n + j, :]); K is a multiple of 16.
template <int MR, int NR>
void tile_out_major_512(float* out, const float* in, const float* w, int K, int N, int n) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_setzero_ps();
  for (int k = 0; k < K; k += 16) {
    __m512 wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_loadu_ps(w + static_cast<size_t>(n + j) * K + k);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_loadu_ps(in + static_cast<size_t>(m) * K + k);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm512_fmadd_ps(xv, wv[j], acc[m][j]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NR; ++j) out[static_cast<size_t>(m) * N + n + j] += hsum512(acc[m][j]);
}
#endif

// out[MR rows, NR columns at n] += dot(in[m, :], W[n + j, :]); K is a multiple of 8.
template <int MR, int NR>
void tile_out_major(float* out, const float* in, const float* w, int K, int N, int n) {
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[m][j] = _mm256_setzero_ps();
  for (int k = 0; k < K; k += 8) {
    __m256 wv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) wv[j] = _mm256_loadu_ps(w + static_cast<size_t>(n + j) * K + k);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m256 xv = _mm256_loadu_ps(in + static_cast<size_t>(m) * K + k);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[m][j] = _mm256_fmadd_ps(xv, wv[j], acc[m][j]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NR; ++j) out[static_cast<size_t>(m) * N + n + j] += hsum(acc[m][j]);
}

// Calls f.template operator()<MR>(r) for row blocks of at most max_mr (<= 8) rows.
template <class F>
void for_row_blocks(int rows, int max_mr, F&& f) {
  int r = 0;
  while (r < rows) {
    int mr = rows - r < max_mr ? rows - r : max_mr;
    switch (mr) {
      case 8:
        f.template operator()<8>(r);
        break;
      case 7:
        f.template operator()<7>(r);
        break;
      case 6:
        f.template operator()<6>(r);
        break;
      case 5:
        f.template operator()<5>(r);
        break;
      case 4:
        f.template operator()<4>(r);
        break;
      case 3:
        f.template operator()<3>(r);
        break;
      case 2:
        f.template operator()<2>(r);
        break;
      default:
        f.template operator()<1>(r);
        break;
    }
    r += mr;
  }
}
#endif

}  // namespace

void small_batch_gemm_in_major(float* out, const float* in, const float* w, int rows, int K, int N, int n0,
                               int n1) {
  int n_vec = n0;
#ifdef CORTEX_AVX2
  // Blocks of kRowsPerPass rows of W are swept left to right, so the reads form a few sequential
  // streams (one per row) that the prefetchers follow; each 16-column strip of the block stays in L1
  // while every group of input rows uses it.
  constexpr int kRowsPerPass = 16;
  // More than 16 input rows make the output block outgrow L1: they are done 16 at a time.
  constexpr int kRowsPerChunk = 16;
  const int n_end = n0 + (n1 - n0) / 16 * 16;
  for (int r0 = 0; r0 < rows; r0 += kRowsPerChunk) {
    const int chunk = rows - r0 < kRowsPerChunk ? rows - r0 : kRowsPerChunk;
    for (int k0 = 0; k0 < K; k0 += kRowsPerPass) {
      const int k1 = k0 + kRowsPerPass < K ? k0 + kRowsPerPass : K;
      int n = n0;
#ifdef CORTEX_AVX512
      for (; n + 32 <= n_end; n += 32)
        for_row_blocks(chunk, 8, [&]<int MR>(int r) {
          tile_in_major_512<MR>(out + static_cast<size_t>(r0 + r) * N, in + static_cast<size_t>(r0 + r) * K,
                                w, K, N, n, k0, k1);
        });
#endif
      for (; n < n_end; n += 16)
        for_row_blocks(chunk, 6, [&]<int MR>(int r) {
          tile_in_major<MR>(out + static_cast<size_t>(r0 + r) * N, in + static_cast<size_t>(r0 + r) * K, w, K,
                            N, n, k0, k1);
        });
    }
  }
  n_vec = n_end;
#endif
  for (int n = n_vec; n < n1; ++n)
    for (int r = 0; r < rows; ++r) {
      float s = 0.f;
      for (int k = 0; k < K; ++k) s += in[static_cast<size_t>(r) * K + k] * w[static_cast<size_t>(k) * N + n];
      out[static_cast<size_t>(r) * N + n] += s;
    }
}

void small_batch_gemm_out_major(float* out, const float* in, const float* w, int rows, int K, int N, int n0,
                                int n1) {
  int n = n0;
#ifdef CORTEX_AVX2
#ifdef CORTEX_AVX512
  if (K % 16 == 0) {
    for (; n + 4 <= n1; n += 4) {
      for_row_blocks(rows, 4, [&]<int MR>(int r) {
        tile_out_major_512<MR, 4>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * K, w, K, N,
                                  n);
      });
    }
  }
#endif
  if (K % 8 == 0) {
    for (; n + 3 <= n1; n += 3) {
      for_row_blocks(rows, 4, [&]<int MR>(int r) {
        tile_out_major<MR, 3>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * K, w, K, N, n);
      });
    }
  }
#endif
  for (; n < n1; ++n)
    for (int r = 0; r < rows; ++r)
      out[static_cast<size_t>(r) * N + n] +=
          dot_product(in + static_cast<size_t>(r) * K, w + static_cast<size_t>(n) * K, K);
}

}  // namespace cortex::model
