#include "model/small_batch_gemm.h"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "model/kernels.h"
#include "model/weight_types.h"

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

// Calls f.template operator()<MR>(r) for row blocks of at most max_mr (<= 8) rows.
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

#ifdef CORTEX_AVX512
inline float hsum512(__m512 v) {  // once per tile: a plain store keeps clear of GCC 12's extract warnings
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0.f;
  for (float l : lanes) s += l;
  return s;
}

inline void prefetch_l2(const void* p) {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1);
}

// out[MR rows, NV·16 columns at n] += in[MR rows, k0:k1] · W[k0:k1, n:n+16·NV] (input rows ldx apart),
// accumulating in MR·NV
// registers loaded from out and stored back. With Masked, the last 16-column vector covers only the
// columns in `mask` (the slice's tail). Each step of k also prefetches `prefetch_lines` cache lines from
// `prefetch` + (k - k0)·N (a later strip of W).
template <int MR, int NV, bool Masked = false>
inline void panel_in_major_512(float* out, const float* in, const float* w, int ldx, int N, int n, int k0,
                               int k1, const float* prefetch, int prefetch_lines, __mmask16 mask = 0xFFFF) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const float* o = out + static_cast<size_t>(m) * N + n + 16 * v;
      acc[m][v] = Masked && v == NV - 1 ? _mm512_maskz_loadu_ps(mask, o) : _mm512_loadu_ps(o);
    }
  const float* wk = w + static_cast<size_t>(k0) * N + n;
  const float* xk = in + k0;
  for (int k = k0; k < k1; ++k, wk += N, ++xk, prefetch += N) {
    if (prefetch_lines > 0) prefetch_l2(prefetch);
    if (prefetch_lines > 1) prefetch_l2(prefetch + 16);
    if (prefetch_lines > 2) prefetch_l2(prefetch + 32);
    __m512 wv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      wv[v] = Masked && v == NV - 1 ? _mm512_maskz_loadu_ps(mask, wk + 16 * v) : _mm512_loadu_ps(wk + 16 * v);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m512 xb = _mm512_set1_ps(xk[static_cast<size_t>(m) * ldx]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_fmadd_ps(xb, wv[v], acc[m][v]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* o = out + static_cast<size_t>(m) * N + n + 16 * v;
      if (Masked && v == NV - 1)
        _mm512_mask_storeu_ps(o, mask, acc[m][v]);
      else
        _mm512_storeu_ps(o, acc[m][v]);
    }
}

// out[rows, n:n+NC] += in[rows, :] · W[n:n+NC, :]ᵀ for W stored [N, K], with the input transposed and
// zero-padded: xt[K, RV·16]. Each step of k broadcasts one weight per column against RV vectors of 16
// rows, so no horizontal sums are needed; W's NC rows are read as NC sequential streams.
template <int RV, int NC>
inline void tile_out_major_t512(float* out, const float* xt, const float* w, int rows, int K, int N, int n,
                                bool prefetch_next) {
  __m512 acc[NC][RV];
#pragma GCC unroll 16
  for (int j = 0; j < NC; ++j)
#pragma GCC unroll 2
    for (int r = 0; r < RV; ++r) acc[j][r] = _mm512_setzero_ps();
  const float* wn = w + static_cast<size_t>(n) * K;
  const size_t ks = static_cast<size_t>(K);
  // The next tile's rows (contiguous after these): NC·K floats, one line per 16 / NC steps of k.
  static_assert(NC <= 16 && 16 % NC == 0);
  const char* next = reinterpret_cast<const char*>(wn + NC * ks);
  constexpr int per_line = 16 / NC;
  for (int k = 0; k < K; ++k) {
    if (prefetch_next && k % per_line == 0) {
      prefetch_l2(next);
      next += 64;
    }
    __m512 x[RV];
#pragma GCC unroll 2
    for (int r = 0; r < RV; ++r) x[r] = _mm512_loadu_ps(xt + static_cast<size_t>(k) * RV * 16 + 16 * r);
#pragma GCC unroll 16
    for (int j = 0; j < NC; ++j) {
      const __m512 b = _mm512_set1_ps(wn[j * ks + k]);
#pragma GCC unroll 2
      for (int r = 0; r < RV; ++r) acc[j][r] = _mm512_fmadd_ps(b, x[r], acc[j][r]);
    }
  }
  alignas(64) float lanes[NC][RV * 16];
#pragma GCC unroll 16
  for (int j = 0; j < NC; ++j)
#pragma GCC unroll 2
    for (int r = 0; r < RV; ++r) _mm512_store_ps(&lanes[j][16 * r], acc[j][r]);
  for (int i = 0; i < rows; ++i) {
    float* o = out + static_cast<size_t>(i) * N + n;
    for (int j = 0; j < NC; ++j) o[j] += lanes[j][i];
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

// Rows of W per pass of the in-major kernel. A pass sweeps its rows of W left to right in 48-column
// strips, as that many sequential streams; every block of 8 input rows reuses a strip from L1, and the
// accumulators are loaded and stored once per pass. Decode steps of a few rows are bound by memory
// and do best with fewer streams; larger batches by arithmetic, with longer passes (up to the L1 TLB's
// reach: each row of W is in its own page).
int k_block(int rows) {
  return rows <= 8 ? 16 : 48;
}

// How many strips ahead the in-major kernel prefetches W into L2.
constexpr int kPrefetchStrips = 2;

void in_major_512(float* out, const float* in, int ldx, const float* w, int rows, int K, int N, int n0,
                  int n1) {
  const int full = n0 + (n1 - n0) / 16 * 16;
  const int tail = n1 - full;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << tail) - 1u);
  const int blocks = (rows + 7) / 8;
  const int kc = k_block(rows);
  for (int k0 = 0; k0 < K; k0 += kc) {
    const int k1 = k0 + kc < K ? k0 + kc : K;
    int n = n0;
    for (; n + 48 <= full; n += 48) {
      // The strip kPrefetchStrips ahead, its three lines per row of W shared among the row blocks.
      const int ahead = n + 48 * kPrefetchStrips;
      const float* pf = w + static_cast<size_t>(k0) * N + ahead;
      const bool prefetch = ahead + 48 <= n1;
      for_row_blocks(rows, 8, [&]<int MR>(int r) {
        const int b = r / 8, l0 = b * 3 / blocks, l1 = (b + 1) * 3 / blocks;
        panel_in_major_512<MR, 3>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * ldx, w, ldx,
                                  N, n, k0, k1, pf + 16 * l0, prefetch ? l1 - l0 : 0);
      });
    }
    if (n + 32 <= full) {
      for_row_blocks(rows, 8, [&]<int MR>(int r) {
        panel_in_major_512<MR, 2>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * ldx, w, ldx,
                                  N, n, k0, k1, w, 0);
      });
      n += 32;
    }
    if (n + 16 <= full) {
      for_row_blocks(rows, 8, [&]<int MR>(int r) {
        panel_in_major_512<MR, 1>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * ldx, w, ldx,
                                  N, n, k0, k1, w, 0);
      });
      n += 16;
    }
    if (tail > 0)
      for_row_blocks(rows, 8, [&]<int MR>(int r) {
        panel_in_major_512<MR, 1, true>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * ldx,
                                        w, ldx, N, n, k0, k1, w, 0, tail_mask);
      });
  }
}

// The input transposed into a per-thread buffer: xt[K, RV·16], rows past `rows` zero.
const float* transpose_input(const float* in, int rows, int K, int RV) {
  thread_local std::vector<float> buffer;
  const int width = RV * 16;
  buffer.assign(static_cast<size_t>(K) * width, 0.f);
  for (int r = 0; r < rows; ++r) {
    const float* x = in + static_cast<size_t>(r) * K;
    float* t = buffer.data() + r;
    for (int k = 0; k < K; ++k) t[static_cast<size_t>(k) * width] = x[k];
  }
  return buffer.data();
}

template <int RV, int NC>
void out_major_t512(float* out, const float* in, const float* w, int rows, int K, int N, int n0, int n1) {
  const float* xt = transpose_input(in, rows, K, RV);
  int n = n0;
  for (; n + NC <= n1; n += NC) tile_out_major_t512<RV, NC>(out, xt, w, rows, K, N, n, n + 2 * NC <= n1);
  for (; n < n1; ++n) tile_out_major_t512<RV, 1>(out, xt, w, rows, K, N, n, false);
}

// out_major_t512 for W stored as F16 or Q8_0: each tile's NC rows of W are converted to F32 first.
template <int RV, int NC>
void out_major_t512_typed(float* out, const float* in, const void* w, DType t, int rows, int K, int N, int n0,
                          int n1) {
  const float* xt = transpose_input(in, rows, K, RV);
  int n = n0;
  for (; n + NC <= n1; n += NC)
    tile_out_major_t512<RV, NC>(out + n, xt, dequantize_rows(w, t, K, n, n + NC), rows, K, N, 0, false);
  for (; n < n1; ++n)
    tile_out_major_t512<RV, 1>(out + n, xt, dequantize_rows(w, t, K, n, n + 1), rows, K, N, 0, false);
}
#endif  // CORTEX_AVX512

// out[MR rows, 16 columns at n] += in[MR rows, k0:k1] · W[k0:k1, n:n+16]: 2·MR accumulators in registers.
template <int MR>
void tile_in_major(float* out, const float* in, const float* w, int ldx, int N, int n, int k0, int k1) {
  __m256 acc[MR][2];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
  const float* wk = w + static_cast<size_t>(k0) * N + n;
  for (int k = k0; k < k1; ++k, wk += N) {
    const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const __m256 xb = _mm256_broadcast_ss(in + static_cast<size_t>(m) * ldx + k);
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
#endif  // CORTEX_AVX2

}  // namespace

void small_batch_gemm_in_major(float* out, const float* in, int ldx, const float* w, int rows, int K, int N,
                               int n0, int n1) {
  int n_vec = n0;
#if defined(CORTEX_AVX512)
  in_major_512(out, in, ldx, w, rows, K, N, n0, n1);
  n_vec = n1;
#elif defined(CORTEX_AVX2)
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
      for (int n = n0; n < n_end; n += 16)
        for_row_blocks(chunk, 6, [&]<int MR>(int r) {
          tile_in_major<MR>(out + static_cast<size_t>(r0 + r) * N, in + static_cast<size_t>(r0 + r) * ldx, w,
                            ldx, N, n, k0, k1);
        });
    }
  }
  n_vec = n_end;
#endif
  for (int n = n_vec; n < n1; ++n)
    for (int r = 0; r < rows; ++r) {
      float s = 0.f;
      for (int k = 0; k < K; ++k)
        s += in[static_cast<size_t>(r) * ldx + k] * w[static_cast<size_t>(k) * N + n];
      out[static_cast<size_t>(r) * N + n] += s;
    }
}

void small_batch_gemm_out_major(float* out, const float* in, const float* w, int rows, int K, int N, int n0,
                                int n1) {
  int n = n0;
#ifdef CORTEX_AVX512
  // More than 4 rows: the transposed input against broadcast weights (no horizontal sums). For fewer,
  // which leave most of a 16-row vector empty, dot products of whole vectors of W and the input.
  if (rows > 16) {
    out_major_t512<2, 8>(out, in, w, rows, K, N, n0, n1);
    return;
  }
  if (rows > 4 || K % 16 != 0) {
    out_major_t512<1, 16>(out, in, w, rows, K, N, n0, n1);
    return;
  }
  for (; n + 4 <= n1; n += 4) {
    for_row_blocks(rows, 4, [&]<int MR>(int r) {
      tile_out_major_512<MR, 4>(out + static_cast<size_t>(r) * N, in + static_cast<size_t>(r) * K, w, K, N,
                                n);
    });
  }
#elif defined(CORTEX_AVX2)
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

const float* dequantize_rows(const void* w, DType t, int K, int n0, int n1) {
  thread_local std::vector<float> buffer;
  const size_t count = static_cast<size_t>(n1 - n0) * static_cast<size_t>(K);
  if (buffer.size() < count) buffer.resize(count);
  // Rows are contiguous (a Q8_0 row is whole blocks), so the rows convert as one run of values.
  convert_to_f32(buffer.data(), t,
                 static_cast<const std::byte*>(w) + row_bytes(t, K) * static_cast<size_t>(n0),
                 static_cast<int64_t>(count));
  return buffer.data();
}

void small_batch_gemm_out_major_typed(float* out, const float* in, const void* w, DType t, int rows, int K,
                                      int N, int n0, int n1) {
#ifdef CORTEX_AVX512
  if (rows > 16) {
    out_major_t512_typed<2, 8>(out, in, w, t, rows, K, N, n0, n1);
    return;
  }
  if (rows > 4 || K % 16 != 0) {
    out_major_t512_typed<1, 16>(out, in, w, t, rows, K, N, n0, n1);
    return;
  }
#endif
  // A tile of rows of W at a time through the F32 kernel, its output shifted to the tile's columns.
  constexpr int kTileRows = 16;
  for (int n = n0; n < n1; n += kTileRows) {
    const int m = std::min(kTileRows, n1 - n);
    small_batch_gemm_out_major(out + n, in, dequantize_rows(w, t, K, n, n + m), rows, K, N, 0, m);
  }
}

}  // namespace cortex::model
