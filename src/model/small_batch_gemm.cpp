// Matrix products for a few rows (decode steps of a small batch): out[rows, N] += in[rows, K] · W, with
// W read once per block of rows, straight from the (mapped) weights, with no packing copy. For 2–32 rows
// this beats a general sgemm, whose packing of W costs more than the product itself. Compiled once per
// instruction set (kernel_isa.h); what each computes: kernel_table.h.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "model/isa_kernels.h"
#include "model/isa_vectors.h"
#include "model/weight_types.h"
#include "util/aligned_vector.h"

CORTEX_ISA_BEGIN

namespace {

#ifdef CORTEX_AVX2
// Makes the compiler hold v in a register from here on: GCC would otherwise fold v's load into every
// multiply-add that uses it: one load per use instead of one per vector. A tile of 4 input rows × 6
// rows of W then ran at ~27 G multiply-adds/s per core (W from L2) instead of ~45, and one of 8 × 3
// makes 27 loads per step, more than two load ports serve in the 12 cycles of its 24 multiply-adds.
template <class T>
inline void keep_in_register(T& v) {
  asm("" : "+v"(v));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
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
// rows, so no horizontal sums are needed; W's NC rows are read as NC sequential streams. Meanwhile the
// `next_bytes` at `next` (the next tile's rows of W, as stored) are fetched into L2, a line every few
// steps of k.
template <int RV, int NC>
inline void tile_out_major_t512(float* out, const float* xt, const float* w, int rows, int K, int N, int n,
                                const char* next, size_t next_bytes) {
  __m512 acc[NC][RV];
#pragma GCC unroll 16
  for (int j = 0; j < NC; ++j)
#pragma GCC unroll 2
    for (int r = 0; r < RV; ++r) acc[j][r] = _mm512_setzero_ps();
  const float* wn = w + static_cast<size_t>(n) * K;
  const size_t ks = static_cast<size_t>(K);
  const char* const next_end = next + next_bytes / 64 * 64;
  const int every = next_bytes >= 64 ? std::max(1, static_cast<int>(ks * 64 / next_bytes)) : K + 1;
  for (int k = 0, countdown = 1; k < K; ++k) {
    if (--countdown == 0) {
      countdown = every;
      if (next < next_end) {
        prefetch_l2(next);
        next += 64;
      }
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

// Rows of W per pass of the in-major kernel. A pass sweeps its rows of W left to right in 48-column
// strips, as that many sequential streams; every block of 8 input rows reuses a strip from L1 (128 rows:
// 24 KiB), and the accumulators are loaded and stored once per pass. On Zen 5 cores, with the prefetch
// below, F32 products of 2–128 rows (GPT-2 124M's dense layers, two threads, steps of the old and new
// kernels alternating) took 0–12 % less time than with the 16 (up to 8 rows) and 48 rows per pass before
// (1.00× at 16 rows, 1.06–1.13× at the others), which had been chosen on the Intel machine for fewer
// streams; 96 and 128 rows read alike, with W on 2 MiB pages or in a mapped file's 4 KiB pages.
constexpr int kPassRows = 128;

// How many strips ahead the in-major kernel prefetches W into L2. The last strips of a pass prefetch the
// first ones of the next pass, whose reads would otherwise wait for memory at the start of every pass
// (by itself 1–6 % less time for 4–32 rows, with the passes of before).
constexpr int kPrefetchStrips = 2;

void in_major_512(float* out, const float* in, int ldx, const float* w, int rows, int K, int N, int n0,
                  int n1) {
  const int full = n0 + (n1 - n0) / 16 * 16;
  const int tail = n1 - full;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << tail) - 1u);
  const int blocks = (rows + 7) / 8;
  const int strips = (full - n0) / 48;  // 48-column strips in a pass
  for (int k0 = 0; k0 < K; k0 += kPassRows) {
    const int k1 = k0 + kPassRows < K ? k0 + kPassRows : K;
    int n = n0;
    for (int s = 0; s < strips; ++s, n += 48) {
      // The strip kPrefetchStrips ahead (in this pass or, from the last ones, at the start of the next
      // pass when that is a whole one), its three lines per row of W shared among the row blocks.
      const int ahead = s + kPrefetchStrips;
      const bool prefetch = ahead < strips || (k1 + kPassRows <= K && ahead - strips < strips);
      const float* pf = !prefetch        ? w
                        : ahead < strips ? w + static_cast<size_t>(k0) * N + n0 + 48 * ahead
                                         : w + static_cast<size_t>(k1) * N + n0 + 48 * (ahead - strips);
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
  thread_local AlignedVector<float> buffer;
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
  const size_t tile_bytes = static_cast<size_t>(NC) * K * sizeof(float);
  for (; n + NC <= n1; n += NC) {
    const bool more = n + 2 * NC <= n1;  // the next tile's rows follow these
    tile_out_major_t512<RV, NC>(out, xt, w, rows, K, N, n,
                                reinterpret_cast<const char*>(w + static_cast<size_t>(n + NC) * K),
                                more ? tile_bytes : 0);
  }
  for (; n < n1; ++n) tile_out_major_t512<RV, 1>(out, xt, w, rows, K, N, n, nullptr, 0);
}

// out_major_t512 for W stored as F16 or Q8_0: each tile's NC rows of W are converted to F32 first.
template <int RV, int NC>
void out_major_t512_typed(float* out, const float* in, const void* w, DType t, int rows, int K, int N, int n0,
                          int n1) {
  const float* xt = transpose_input(in, rows, K, RV);
  int n = n0;
  const size_t row = row_bytes(t, K), tile_bytes = NC * row;
  const char* stored = static_cast<const char*>(w);
  for (; n + NC <= n1; n += NC) {
    // While this tile computes, the next tile's stored rows come into L2 for its conversion.
    const bool more = n + 2 * NC <= n1;
    tile_out_major_t512<RV, NC>(out + n, xt, dequantize_rows(w, t, K, n, n + NC), rows, K, N, 0,
                                stored + static_cast<size_t>(n + NC) * row, more ? tile_bytes : 0);
  }
  for (; n < n1; ++n)
    tile_out_major_t512<RV, 1>(out + n, xt, dequantize_rows(w, t, K, n, n + 1), rows, K, N, 0, nullptr, 0);
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

#if defined(CORTEX_AVX2)
// W's rows [N, K] in their stored type, read a chunk at a time: row(n) is where row n starts; a chunk is
// kSteps vectors of V::kWidth values (one Q8_0 block, or one vector), and load(r, c, s) reads vector s of
// chunk c of the row at r as F32, so that a tile computes one chunk offset for all its rows of W and the
// offsets within a chunk are constants. kBytesPerChunk: the bytes of a row one chunk covers (for
// prefetching).
template <class V>
struct F32Rows {
  using Row = const float*;
  static constexpr int kSteps = 1;
  const float* w;
  size_t k_stride;
  Row row(int n) const { return w + static_cast<size_t>(n) * k_stride; }
  typename V::T load(Row r, int c, int) const { return V::load(r + static_cast<size_t>(c) * V::kWidth); }
  static constexpr size_t kBytesPerChunk = V::kWidth * sizeof(float);
};
template <class V>
struct F16Rows {
  using Row = const uint16_t*;
  static constexpr int kSteps = 1;
  const uint16_t* w;
  size_t k_stride;
  Row row(int n) const { return w + static_cast<size_t>(n) * k_stride; }
  typename V::T load(Row r, int c, int) const { return V::load_f16(r + static_cast<size_t>(c) * V::kWidth); }
  static constexpr size_t kBytesPerChunk = V::kWidth * sizeof(uint16_t);
};
template <class V>
struct Q8Rows {
  using Row = const BlockQ8_0*;
  static constexpr int kSteps = kQ8Block / V::kWidth;
  const BlockQ8_0* w;
  size_t blocks_per_row;
  const float* scale;  // fp16_table()
  Row row(int n) const { return w + static_cast<size_t>(n) * blocks_per_row; }
  typename V::T load(Row r, int c, int s) const {
    const BlockQ8_0& b = r[c];
    return V::mul(V::set1(scale[b.d]), V::load_q8(b.q + s * V::kWidth));
  }
  static constexpr size_t kBytesPerChunk = sizeof(BlockQ8_0);
};

#ifdef CORTEX_AVX512
// The sums of 16 vectors, v[i]'s in element i: the vectors' halves, quarters, pairs and single elements
// added together level by level (45 shuffles and adds and one permutation for all 16, where summing each
// vector alone takes ~8). "Lane" below: a 128-bit lane of four elements.
inline __m512 hsum16(const __m512* v) {
  __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i)  // lanes 0-1: v[2i]'s eight partial sums; lanes 2-3: v[2i + 1]'s eight
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)  // lane l: v[4i + l]'s four partial sums
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xDD));
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i)  // lane l: two partial sums each of v[8i + l] and v[8i + 4 + l], interleaved
    c[i] =
        _mm512_add_ps(_mm512_unpacklo_ps(b[2 * i], b[2 * i + 1]), _mm512_unpackhi_ps(b[2 * i], b[2 * i + 1]));
  // Lane l: the sums of v[l], v[4 + l], v[8 + l], v[12 + l]; then in order, element i v[i]'s.
  const __m512 d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), d);
}

// out[m·N + on + j·ojs] += the sum of acc[m][j]'s lanes, for all MR·NR sums at once (16 at a time).
template <int MR, int NR>
inline void add_sums(float* out, const __m512 (&acc)[MR][NR], int N, int on, int ojs) {
  constexpr int kSums = MR * NR, kGroups = (kSums + 15) / 16;
  __m512 v[kGroups * 16];
#pragma GCC unroll 64
  for (int i = 0; i < kGroups * 16; ++i) v[i] = i < kSums ? acc[i / NR][i % NR] : _mm512_setzero_ps();
  alignas(64) float sums[kGroups * 16];
#pragma GCC unroll 4
  for (int g = 0; g < kGroups; ++g) _mm512_store_ps(sums + 16 * g, hsum16(v + 16 * g));
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) out[static_cast<size_t>(m) * N + on + j * ojs] += sums[m * NR + j];
}
#endif

// out[m, on + j·ojs] += dot(in[m, :], W[wn + j·wjs, :]) for m < MR, j < NR: each vector of W, widened
// once, meets MR input rows in registers (MR·NR sums). Rows of W far apart are sequential streams far
// apart, as the single-row kernels read (several streams keep more memory requests in flight). With
// `ahead` > 0, the row `ahead` rows further on of the streams j = pf_first, pf_first + pf_step, ... is
// fetched into L2 meanwhile, a line whenever the reads cross one. The input rows are K apart, or with
// Packed interleaved by vector as pack_rows writes them.
template <class V, int MR, int NR, bool Packed = false, class Rows>
inline void tile_dot(float* out, const float* in, const Rows& w, int wn, int wjs, int K, int N, int on,
                     int ojs, int ahead = 0, int pf_first = 0, int pf_step = 1) {
  typename V::T acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[m][j] = V::zero();
  typename Rows::Row row[NR];
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) row[j] = w.row(wn + j * wjs);
  const ptrdiff_t pf_offset =
      ahead > 0 ? reinterpret_cast<const char*>(w.row(wn + ahead)) - reinterpret_cast<const char*>(row[0])
                : 0;
  // Where this step's vector of input row m starts: xk + m·x_row.
  const size_t x_row = Packed ? V::kWidth : static_cast<size_t>(K);
  constexpr int kChunk = Rows::kSteps * V::kWidth;
  const float* xk = in;
  for (int c = 0; c < K / kChunk; ++c) {
    if (ahead > 0) {
      const size_t at = static_cast<size_t>(c) * Rows::kBytesPerChunk;
      if (at % 64 < Rows::kBytesPerChunk) {  // this chunk's read starts a new line
        for (int j = pf_first; j < NR; j += pf_step)
          _mm_prefetch(reinterpret_cast<const char*>(row[j]) + pf_offset + at, _MM_HINT_T1);
      }
    }
#pragma GCC unroll 4
    for (int s = 0; s < Rows::kSteps; ++s, xk += Packed ? MR * V::kWidth : V::kWidth) {
      typename V::T wv[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) wv[j] = w.load(row[j], c, s);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        typename V::T x = V::load(xk + m * x_row);
        keep_in_register(x);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[m][j] = V::fmadd(x, wv[j], acc[m][j]);
      }
    }
  }
#ifdef CORTEX_AVX512
  // 1–3 % less time for 4–16 rows of F16 and Q8_0; below 8 sums (narrow tiles at a share's end), the
  // tree over mostly zero padding would take more operations than the sums one by one.
  if constexpr (V::kWidth == 16 && MR * NR >= 8) {
    add_sums<MR, NR>(out, acc, N, on, ojs);
    return;
  }
#endif
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) out[static_cast<size_t>(m) * N + on + j * ojs] += V::hsum(acc[m][j]);
}

// Columns of W per tile for a batch of `rows` input rows, so that the tile's sums, its NR vectors of W
// and one of x fit the registers.
template <class V>
constexpr int tile_columns(int rows) {
  if (V::kWidth == 16) return rows <= 3 ? 8 : 6;  // 32 registers: MR·NR sums, NR vectors of W, one of x
  return rows <= 2 ? 4 : 3;                       // 16 registers
}

// in[rows, K] rearranged for tiles of up to kPackedRows input rows into a per-thread buffer: the block
// of rows [r, r + MR) starts at r·K and holds, for each vector-wide slice of K in turn, its MR rows'
// slices one after the other. A tile then reads a step's MR vectors through one pointer at constant
// offsets, where rows K apart take a pointer each (with 8 rows and 3 of W, 11 streams and ~2/3 of the
// speed, measured with W from L2).
constexpr int kPackedRows = 8;

template <int Width>
const float* pack_rows(const float* in, int rows, int K) {
  thread_local AlignedVector<float> buffer;
  buffer.resize(static_cast<size_t>(rows) * K);
  for (int r0 = 0; r0 < rows; r0 += kPackedRows) {
    const int mr = std::min(kPackedRows, rows - r0);
    float* block = buffer.data() + static_cast<size_t>(r0) * K;
    for (int k = 0; k < K; k += Width)
      for (int m = 0; m < mr; ++m)
        std::copy_n(in + static_cast<size_t>(r0 + m) * K + k, Width,
                    block + static_cast<size_t>(k) * mr + m * Width);
  }
  return buffer.data();
}

// out[r, n] += dot(in[r, :], W[n, :]) for every row r < rows and n in [n0, n1), K a multiple of the
// vector width. The thread's rows of W are split into NR regions read side by side: tile i takes row i
// of each region, and is met by blocks of input rows while it is in L1 (widened once per block); the
// blocks share the prefetching of each region's row kPrefetchRows further on. The blocks are of up to
// V::kMaxRows rows as they lie or, with Packed, of up to kPackedRows rows of the input packed by
// pack_rows (8 × 3 tiles take 28 of AVX-512's 32 registers: MR·NR sums, NR vectors of W, one of x).
template <class V, int NR, bool Packed = false, class Rows>
void out_major_dot(float* out, const float* in, const Rows& w, int rows, int K, int N, int n0, int n1) {
  constexpr int kPrefetchRows = 3;
  constexpr int kBlockRows = Packed ? kPackedRows : V::kMaxRows;
  const float* x = Packed ? pack_rows<V::kWidth>(in, rows, K) : in;
  const int q = (n1 - n0) / NR;  // rows per region
  const int blocks = std::min(NR, (rows + kBlockRows - 1) / kBlockRows);
  for (int i = 0; i < q; ++i) {
    const int n = n0 + i;
    const int ahead = i + kPrefetchRows < q ? kPrefetchRows : 0;
    for_row_blocks(rows, kBlockRows, [&]<int MR>(int r) {
      const int b = r / kBlockRows;
      tile_dot<V, MR, NR, Packed>(out + static_cast<size_t>(r) * N, x + static_cast<size_t>(r) * K, w, n, q,
                                  K, N, n, q, b < blocks ? ahead : 0, b, blocks);
    });
  }
  for (int n = n0 + NR * q; n < n1; ++n)
    for_row_blocks(rows, kBlockRows, [&]<int MR>(int r) {
      tile_dot<V, MR, 1, Packed>(out + static_cast<size_t>(r) * N, x + static_cast<size_t>(r) * K, w, n, 0, K,
                                 N, n, 0);
    });
}

// out_major_dot with the tile width chosen for `rows`.
template <class V, class Rows>
void out_major_dot(float* out, const float* in, const Rows& w, int rows, int K, int N, int n0, int n1) {
  // AVX-512: more rows than a tile takes as they lie go in packed blocks of 8 (each vector of W widened
  // once per 8 rows instead of once per 4).
  if constexpr (V::kWidth == 16)
    if (rows > V::kMaxRows) return out_major_dot<V, 3, true>(out, in, w, rows, K, N, n0, n1);
  const int nr = rows <= 2   ? tile_columns<V>(2)
                 : rows == 3 ? tile_columns<V>(3)
                 : rows == 4 ? tile_columns<V>(4)
                             : tile_columns<V>(5);
  switch (nr) {
    case 8:
      return out_major_dot<V, 8>(out, in, w, rows, K, N, n0, n1);
    case 6:
      return out_major_dot<V, 6>(out, in, w, rows, K, N, n0, n1);
    case 5:
      return out_major_dot<V, 5>(out, in, w, rows, K, N, n0, n1);
    case 4:
      return out_major_dot<V, 4>(out, in, w, rows, K, N, n0, n1);
    default:
      return out_major_dot<V, 3>(out, in, w, rows, K, N, n0, n1);
  }
}

// Input rows up to which products with W stored [N, K] run in dot-product tiles, multiplying straight
// from the stored weights; more rows use tiles of W as broadcasts against the transposed input (F32) or
// convert tiles of W to F32 first (F16, Q8_0). Measured with cortex_linear_bench: beyond these counts
// the other kernels are as fast or faster.
constexpr int kDotRowsF32 = 8;
constexpr int kDotRowsF16 = 16;
// Q8_0: with AVX-512, 9–16 rows (a server's step of 8 sequences and a short prompt) ran at half the rate
// of 8 rows on the converted tiles; in dot tiles, packed blocks of 8 rows (Q8_0 widened once per block),
// as fast: 10 rows 266 / 291 tok/s against 147 / 207, 12 rows 389 / 400 against 230 / 253 (alternating
// runs). AVX2 tiles take 4 rows as they lie (no packing): widening Q8_0 again for every block of 4 rows
// costs more beyond 8.
constexpr int kDotRowsQ8_0 = BestVec::kWidth == 16 ? 16 : 8;

// The product by dot-product tiles for W stored [N, K] as t: true when it ran (K fits the vectors and
// Q8_0 blocks).
bool out_major_dot(float* out, const float* in, const void* w, DType t, int rows, int K, int N, int n0,
                   int n1) {
  using V = BestVec;
  if (K % V::kWidth != 0) return false;
  const size_t ks = static_cast<size_t>(K);
  if (t == DType::kF32) {
    out_major_dot<V>(out, in, F32Rows<V>{static_cast<const float*>(w), ks}, rows, K, N, n0, n1);
    return true;
  }
  if (t == DType::kF16) {
    out_major_dot<V>(out, in, F16Rows<V>{static_cast<const uint16_t*>(w), ks}, rows, K, N, n0, n1);
    return true;
  }
  if (t == DType::kQ8_0 && K % kQ8Block == 0) {
    out_major_dot<V>(out, in, Q8Rows<V>{static_cast<const BlockQ8_0*>(w), ks / kQ8Block, fp16_table()}, rows,
                     K, N, n0, n1);
    return true;
  }
  return false;
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
#if defined(CORTEX_AVX2)
  if (rows <= kDotRowsF32 && out_major_dot(out, in, w, DType::kF32, rows, K, N, n0, n1)) return;
#endif
  int n = n0;
#ifdef CORTEX_AVX512
  // Past the dot-product tiles: the transposed input against broadcast weights (no horizontal sums).
  if (rows > 16) {
    out_major_t512<2, 8>(out, in, w, rows, K, N, n0, n1);
    return;
  }
  out_major_t512<1, 16>(out, in, w, rows, K, N, n0, n1);
  return;
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
  thread_local AlignedVector<float> buffer;
  const size_t count = static_cast<size_t>(n1 - n0) * static_cast<size_t>(K);
  if (buffer.size() < count) buffer.resize(count);
  // Rows are contiguous (a Q8_0 row is whole blocks), so the rows convert as one run of values.
  widen_to_f32(buffer.data(), t, static_cast<const std::byte*>(w) + row_bytes(t, K) * static_cast<size_t>(n0),
               static_cast<int64_t>(count));
  return buffer.data();
}

void small_batch_gemm_out_major_typed(float* out, const float* in, const void* w, DType t, int rows, int K,
                                      int N, int n0, int n1) {
#if defined(CORTEX_AVX2)
  if (rows <= (t == DType::kQ8_0 ? kDotRowsQ8_0 : kDotRowsF16) &&
      out_major_dot(out, in, w, t, rows, K, N, n0, n1))
    return;
#endif
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

CORTEX_ISA_END
